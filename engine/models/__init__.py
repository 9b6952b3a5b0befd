"""Models in docker-py's shape: each holds ``attrs`` (Docker's inspect JSON) and can ``reload()``;
collections offer ``get/list/create/remove/prune``. The CLI, magics and REST API use only these."""
