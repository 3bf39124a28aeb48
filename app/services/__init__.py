"""What the API's routes and the dashboard's pages both do, once: read the registry, the jobs
and the datasets into their public shapes, move an alias, cancel a job.

Route handlers are FastAPI's (their arguments are dependencies); a page that needs the same
work calls these functions, never a route. Nothing here knows of requests or responses: callers
pass what the request carried (a session, the scorer, the dispatcher, the caller's key).
"""
