"""nas-surrogate worker package (the service layer; thin over ml/)."""
