"""Where the project leans on other projects' internals, each in one place.

One module per project (``kfp_local``, ``kserve``, ``uvicorn``). Each workaround names what
it relies on and why, and ``tests/unit/test_workarounds_<project>.py`` holds one test per
workaround that fails, naming it, when an upgrade of that project breaks it.
"""
