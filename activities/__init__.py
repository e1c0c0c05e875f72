"""Every side effect of the jobs, as methods of classes built with their dependencies."""
