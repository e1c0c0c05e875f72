"""Local stand-ins for the outside world, used by `petcare dev` and by the tests."""
