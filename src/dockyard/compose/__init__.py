"""Compose: multi-service applications on one machine (``dockyard compose``), and their export to
Kubernetes (``dockyard kube generate``).

Pure cores (no os/subprocess/socket; files are read by the caller and passed in as text):

- ``dotenv.py``       ``.env`` and ``env_file`` parsing by compose's rules (``KEY=VAL``, ``export``,
                      quotes, escapes in double quotes, multi-line double-quoted values, comments)
- ``interpolate.py``  the Compose Specification's interpolation: ``$VAR`` ``${VAR}``
                      ``${VAR:-d}`` ``${VAR-d}`` ``${VAR:?e}`` ``${VAR?e}`` ``${VAR:+r}`` ``${VAR+r}``,
                      nested, ``$$`` escapes; errors name the file and the path inside it
- ``loader.py``       ``load_project``: files -> one validated, normalised project: YAML (1.2 scalars,
                      ``!reset``/``!override``), validation against compose-spec.json (a copy ships
                      in this package; errors: file, path, what is wrong, line), ``extends`` (same
                      or another file), several ``-f`` merged, profiles, the project name (``-p``,
                      COMPOSE_PROJECT_NAME, ``name:``, the directory), env_file folded into
                      environment, consistency checks (undefined networks/volumes/services, cycles)
- ``normalize.py``    one file's short syntaxes made long (ports, volumes, environment, depends_on,
                      build, healthcheck, ...; relative paths made absolute) and the spec's merge
                      rules between files
- ``model.py``        typed project values (Project, Service, PortConfig, VolumeMount, ...), the
                      short-syntax parsers for ports and volumes, duration/size units, and
                      ``Service.config_hash()`` for "recreate only what changed"
- ``render.py``       ``render_config``: a project as ``docker compose config`` prints it (loads back)

Converge (pure planning, then I/O through the engine facade):

- ``convert.py``      a service as ContainerCreateOptions, with docker compose's labels (pure)
- ``plan.py``         keep / start / recreate / remove / create per container; ports under --scale (pure)
- ``project.py``      ComposeProject: up (networks, volumes, images, containers in dependency order,
                      idempotent, --scale, --wait), run, start/stop/restart/kill/rm
- ``images.py``       build (the builder's facade), pull, push
- ``waits.py``        depends_on conditions and ``up --wait``
- ``teardown.py``     down (also after a partial up: everything is found by label)
- ``watch.py``        ``compose watch``: develop.watch rules by polling (sync, restart, rebuild)
- ``kube.py``         Kubernetes manifests from a project (pure); ``kube_containers.py`` running
                      containers as services
"""
