"""I/O-free pydantic models shared by workflows, activities and the API, one module per job.

Workflows import them through `workflow.unsafe.imports_passed_through()`.
"""
