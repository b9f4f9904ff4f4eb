"""Dockerfile -> image: ``dockyard build``, the Engine API's /build, compose's ``build:``.

Pure cores (no os/subprocess/socket; tested fast and exhaustively):

- ``expand.py``       Docker's variable substitution (BuildKit's shell lexer rules)::

      expand(word: str, env: Mapping[str, str], *, escape: str = "\\\\", process_quotes=True) -> str
          $VAR ${VAR} ${VAR:-default} ${VAR-default} ${VAR:+alt} ${VAR+alt} ${VAR:?msg} ${VAR?msg}
          (InvalidArgument), ${VAR#pat} ${VAR%pat} ${VAR/pat/rep} (and ## %% //), nested words,
          escapes (\\$ stays literal), single quotes literal, double quotes keep expansion; the quotes
          are removed as the shell would ("ProcessWord").  An absent key is unset, "" is empty.
          process_quotes=False: quotes are plain text (COPY/ADD heredoc bodies).
      expand_words(text: str, env, *, escape, process_quotes=True) -> list[str]
          word splitting after substitution ("ProcessWords"): EXPOSE $PORTS.

- ``dockerignore.py`` .dockerignore and Dockerfile-specific ignore files (``<Dockerfile>.dockerignore``)
  with Docker's rules (moby/patternmatcher): ``**``, ``*``, ``?``, ``[...]``, ``!`` exceptions
  (last match wins), leading ``/`` and ``./`` stripped, paths cleaned, a pattern matching a
  directory excludes everything below it; a directory excluded with an exception inside it is
  still walked.  The Dockerfile and .dockerignore may be excluded: context.py still reads them
  but does not let COPY/ADD see them::

      class IgnoreMatcher:
          def __init__(self, patterns: Sequence[str]) -> None           # InvalidArgument: "!", bad [..]
          def excluded(self, path: str, is_dir: bool = False) -> bool   # path relative, "/"-separated
          def may_contain_exceptions(self, dir_path: str) -> bool        # walk into an excluded dir?
          patterns: tuple[Pattern, ...]; has_exceptions: bool
      def read_ignore_patterns(text: str) -> list[str]                  # comments, blank lines, cleaning
      def ignore_file_candidates(dockerfile: str) -> list[str]          # <dockerfile>.dockerignore first
      def clean_path(path: str) -> str                                  # Go's filepath.Clean

- ``plan.py``         the Dockerfile parsed with the BuildKit parser (PyPI ``dockerfile``) into
  stages and instructions, checked as BuildKit checks them, with the meta ARGs resolved, FROM
  expanded, and the stages the target needs (nothing else is expanded: see expand_instruction)::

      @dataclass Heredoc: name, content (chomped for <<-), file_descriptor, expand (marker unquoted), chomp
      @dataclass Instruction: kind ("RUN", ...), value: list[str], flags: dict[str, list[str]],
                              json: bool, original: str, line: int, heredocs: list[Heredoc],
                              end_line: int, sub_kind / trigger (ONBUILD: "RUN" / "RUN echo hi")
          .flag(name, default="") .flag_values(name) .has_flag(name) .flag_true(name)
          .pairs() (ENV/LABEL) .args() (ARG: (name, default | None))
      @dataclass Stage: index: int, name: str (AS name, lower-cased; "" if none), base: str (FROM after
                        expansion of the meta ARGs; "scratch" possible), platform: str,
                        instructions: list[Instruction], base_stage: int | None (FROM <earlier stage>),
                        depends_on: list[int], from_instruction: Instruction
      @dataclass BuildPlan: stages: list[Stage], meta_args: dict[str, str | None],
                            escape: str, syntax: str, target: Stage, needed: list[int] (stage indexes
                            in build order: the target and what it depends on through FROM <stage>
                            and COPY --from / RUN --mount=from), global_args (platform + meta ARGs),
                            build_args
          .stage(ref) -> Stage | None (name or index; None = an image)   .unused_build_args()
      def make_plan(text: str, build_args: Mapping[str, str], target: str = "", *,
                    dockerfile_name="Dockerfile", platform="linux/amd64", build_platform="linux/amd64")
          Errors (InvalidArgument, Docker's words): "dockerfile parse error on line N: unknown
          instruction: FOO" (and every argument/flag check), 'target stage "x" could not be found',
          "no build stage in current context", "the Dockerfile (Dockerfile) cannot be empty", ...
      For the executor: expand_instruction(ins, env, *, escape) -> Instruction (Docker's expansion
      rules per instruction), resolve_arg(name, default, *, build_args, global_args, env, escape),
      expands_variables(kind), EXPANDING_INSTRUCTIONS, EXPANDED_FLAGS, PROXY_ARGS / proxy_args(),
      PLATFORM_ARGS / platform_args(), parse_healthcheck(ins) -> HealthConfig, parse_go_duration(),
      parse_onbuild_triggers(triggers) -> list[Instruction], parse_directives(text).

I/O parts:

- ``context.py``     the build context: a directory, a tar stream (``-``), or a Dockerfile alone on
  stdin; filtered through the ignore matcher; file contents + metadata hashed for the cache.
- ``cache.py``       the build cache in the metadata DB (``build_cache`` table): cache key ->
  image ID, shared by every dockyard process; ``builder prune``.
- ``executor.py``    runs a plan: each instruction commits an image (RUN in a container through the
  same lifecycle as ``dockyard run``; COPY/ADD into a snapshot; metadata-only instructions change
  the config with an empty_layer history entry); yields typed events (step started, output line,
  step done with duration and cached flag, result) that the CLI renders with rich and the API
  encodes as Docker's JSON stream.
"""
