"""nas-surrogate machine-learning core: genome language, compiler, encoders (and later datasets,
models and the trainer). ``app/`` and ``worker/`` stay thin over this package."""
