"""tasks: the Celery app, its tasks and the beat schedule: thin glue over archive."""
