"""The composition root: the ``nas-surrogate`` command (the core's commands plus the service's)
and the embedded service (``serve``: the HTTP app with jobs on an in-process thread). The only
package that may import every other one."""
