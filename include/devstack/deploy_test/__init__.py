"""``make deploy-test``: the deployment, for real, on this machine.

Installs Docker Engine and Compose from Debian's packages, starts the daemon, builds the base images no registry
can give us (stand-ins, ``deploy/base-images/``), builds the project's images through ``docker-compose.yaml``, runs
that file as written with the ``demo`` profile, checks the running containers (``checks``) and stops everything it
started. Modules: ``engine`` (packages, daemon, the docker and compose commands), ``images`` (base images and
builds), ``image_lock`` (the built image is the runtime lock), ``settings`` (the run's .env and secrets), ``checks``
(what is shown), ``cli`` (the run).
"""
