"""nas-surrogate app package (the service layer; thin over ml/)."""
