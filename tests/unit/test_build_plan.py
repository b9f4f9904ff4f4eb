"""Dockerfile planning: every instruction of issue 6, stages and --target, ARG scoping, errors.

Expectations are Docker's (BuildKit's instructions/parse.go and dockerfile2llb messages, the
Dockerfile reference for meta ARGs, predefined ARGs and variable expansion).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from dockyard.build import plan as plan_module
from dockyard.build.plan import (
    EXPANDING_INSTRUCTIONS,
    INSTRUCTIONS,
    PROXY_ARGS,
    BuildPlan,
    HealthConfig,
    Instruction,
    expand_instruction,
    expands_variables,
    make_plan,
    parse_directives,
    parse_go_duration,
    parse_healthcheck,
    parse_onbuild_triggers,
    platform_args,
    proxy_args,
    resolve_arg,
)
from dockyard.errors import InvalidArgument

FLASK = """\
FROM python:3.11-slim
WORKDIR /app
COPY . /app
RUN pip install --no-cache-dir -r requirements.txt
EXPOSE 5000
ENV NAME World
CMD ["python", "app.py"]
"""


def plan(text: str, build_args: dict[str, str] | None = None, target: str = "") -> BuildPlan:
    return make_plan(text, build_args or {}, target)


def error(text: str, build_args: dict[str, str] | None = None, target: str = "") -> str:
    with pytest.raises(InvalidArgument) as info:
        make_plan(text, build_args or {}, target)
    return str(info.value)


def only(text: str) -> Instruction:
    """The single instruction after ``FROM scratch``."""
    (instruction,) = plan("FROM scratch\n" + text).stages[0].instructions
    return instruction


# --- the getting-started app ----------------------------------------------------------------


def test_flask_dockerfile() -> None:
    p = plan(FLASK)
    assert len(p.stages) == 1
    stage = p.stages[0]
    assert (stage.index, stage.name, stage.base, stage.platform) == (0, "", "python:3.11-slim", "")
    assert stage.base_stage is None and stage.depends_on == []
    assert stage.display_name == "0"
    assert p.target is stage and p.needed == [0] and p.needed_stages == [stage]
    assert [i.kind for i in stage.instructions] == ["WORKDIR", "COPY", "RUN", "EXPOSE", "ENV", "CMD"]
    workdir, copy, run, expose, env, cmd = stage.instructions
    assert workdir.value == ["/app"] and workdir.line == 2
    assert copy.value == [".", "/app"]
    assert run.value == ["pip install --no-cache-dir -r requirements.txt"] and not run.json
    assert expose.value == ["5000"]
    assert env.pairs() == [("NAME", "World")]
    assert cmd.value == ["python", "app.py"] and cmd.json
    assert cmd.original == 'CMD ["python", "app.py"]'
    assert stage.from_instruction is not None and stage.from_instruction.line == 1
    assert p.escape == "\\" and p.syntax == "" and p.meta_args == {}


def test_instruction_names_are_case_insensitive() -> None:
    p = plan("from alpine as Builder\nrun echo hi\nworkdir /x\n")
    assert p.stages[0].name == "builder"
    assert [i.kind for i in p.stages[0].instructions] == ["RUN", "WORKDIR"]


# --- every instruction of issue 6 -----------------------------------------------------------

EVERYTHING = """\
# syntax=docker/dockerfile:1
ARG BASE=alpine:3.19
FROM --platform=$BUILDPLATFORM ${BASE} AS build
RUN echo shell form
RUN ["echo", "exec", "form"]
RUN <<EOF
echo heredoc
EOF
RUN --mount=type=cache,target=/root/.cache --network=none --security=sandbox echo flags
CMD echo cmd
ENTRYPOINT ["/bin/sh", "-c"]
LABEL org.opencontainers.image.title="demo app" version=1
MAINTAINER someone@example.com
EXPOSE 80/tcp 53/udp
ENV A=1 B="two words"
ENV C 3
ADD --chmod=755 --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d \\
    https://example.com/tool.tgz /opt/
ADD --keep-git-dir=true --link --unpack=false local.tar.gz /srv/
COPY --chown=1000:1000 --chmod=644 --link --parents --exclude=*.pyc --exclude=tests app/ /app/
VOLUME /data /cache
VOLUME ["/logs"]
USER app:app
WORKDIR /app
ARG VERSION=1.0 OTHER
ONBUILD RUN echo child
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s --start-interval=1s --retries=3 CMD curl -f http://localhost/
SHELL ["/bin/bash", "-c"]
FROM scratch
COPY --from=build /app /app
"""


def test_every_instruction_is_accepted() -> None:
    p = plan(EVERYTHING)
    assert p.syntax == "docker/dockerfile:1"
    build, final = p.stages
    kinds = {i.kind for i in build.instructions} | {"FROM"}
    assert kinds == INSTRUCTIONS
    assert build.base == "alpine:3.19" and build.platform == "linux/amd64" and build.name == "build"
    assert final.base == "scratch" and final.depends_on == [0]
    assert p.needed == [0, 1]
    by_line = {i.line: i for i in build.instructions}

    heredoc_run = by_line[6]
    assert heredoc_run.value == ["<<EOF"] and heredoc_run.end_line == 8
    assert [(h.name, h.content) for h in heredoc_run.heredocs] == [("EOF", "echo heredoc\n")]

    flagged_run = by_line[9]
    assert flagged_run.flags == {
        "mount": ["type=cache,target=/root/.cache"],
        "network": ["none"],
        "security": ["sandbox"],
    }
    label = by_line[12]
    assert label.pairs() == [("org.opencontainers.image.title", '"demo app"'), ("version", "1")]
    env_old_form = by_line[16]
    assert env_old_form.pairs() == [("C", "3")]
    add_url = by_line[17]
    assert add_url.value == ["https://example.com/tool.tgz", "/opt/"]
    assert add_url.flag("chmod") == "755" and add_url.flag("checksum").startswith("sha256:")
    add_local = by_line[19]
    assert add_local.flag_true("keep-git-dir") and add_local.flag_true("link")
    assert not add_local.flag_true("unpack") and add_local.flag("unpack") == "false"
    copy = by_line[20]
    assert copy.flags == {
        "chown": ["1000:1000"],
        "chmod": ["644"],
        "link": ["true"],
        "parents": ["true"],
        "exclude": ["*.pyc", "tests"],
    }
    assert copy.flag_values("exclude") == ["*.pyc", "tests"] and not copy.has_flag("from")
    assert by_line[22].json and by_line[22].value == ["/logs"]
    assert by_line[25].args() == [("VERSION", "1.0"), ("OTHER", None)]
    onbuild = by_line[26]
    assert (onbuild.sub_kind, onbuild.trigger) == ("RUN", "RUN echo child")
    health = parse_healthcheck(by_line[28])
    assert health == HealthConfig(
        test=["CMD-SHELL", "curl -f http://localhost/"],
        interval=30 * 10**9,
        timeout=3 * 10**9,
        start_period=5 * 10**9,
        start_interval=10**9,
        retries=3,
    )
    assert by_line[29].json and by_line[29].value == ["/bin/bash", "-c"]


def test_from_scratch_and_platform_flag() -> None:
    p = plan("FROM --platform=linux/arm64 scratch\n")
    assert p.stages[0].base == "scratch" and p.stages[0].platform == "linux/arm64"


# --- errors Docker reports --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FROM alpine\nFOO bar\n", "dockerfile parse error on line 2: unknown instruction: FOO"),
        ("FROM alpine\n\n\nfoo\n", "dockerfile parse error on line 4: unknown instruction: FOO"),
        (
            "FROM alpine\nRUN echo \\\n  hi\nFORM x\n",
            "dockerfile parse error on line 4: unknown instruction: FORM",
        ),
        ("RUN echo hi\n", "dockerfile parse error on line 1: no build stage in current context"),
        ("ARG A=1\nENV B=2\nFROM x\n", "dockerfile parse error on line 2: no build stage in current context"),
        ("ARG A=1\n", "no build stage in current context"),
        ("FROM alpine\nENV A\n", "dockerfile parse error on line 2: ENV must have two arguments"),
        ("FROM alpine\nRUN x\nLABEL a\n", "dockerfile parse error on line 3: LABEL must have two arguments"),
        ("FROM alpine\nRUN <<EOF\necho\n", "dockerfile parse error on line 2: unterminated heredoc"),
        ("FROM alpine\nENV\n", "dockerfile parse error on line 2: ENV requires at least one argument"),
        ("FROM alpine\nLABEL\n", "dockerfile parse error on line 2: LABEL requires at least one argument"),
        ("FROM alpine\nARG\n", "dockerfile parse error on line 2: ARG requires at least one argument"),
        ("FROM alpine\nARG =x\n", "dockerfile parse error on line 2: ARG names can not be blank"),
        ("FROM alpine\nEXPOSE\n", "dockerfile parse error on line 2: EXPOSE requires at least one argument"),
        ("FROM alpine\nVOLUME\n", "dockerfile parse error on line 2: VOLUME requires at least one argument"),
        (
            'FROM alpine\nVOLUME [""]\n',
            "dockerfile parse error on line 2: VOLUME specified can not be an empty string",
        ),
        ("FROM alpine\nWORKDIR\n", "dockerfile parse error on line 2: WORKDIR requires exactly one argument"),
        ("FROM alpine\nUSER\n", "dockerfile parse error on line 2: USER requires exactly one argument"),
        (
            "FROM alpine\nSTOPSIGNAL\n",
            "dockerfile parse error on line 2: STOPSIGNAL requires exactly one argument",
        ),
        (
            "FROM alpine\nMAINTAINER\n",
            "dockerfile parse error on line 2: MAINTAINER requires exactly one argument",
        ),
        (
            "FROM alpine\nCOPY app\n",
            (
                "dockerfile parse error on line 2: COPY requires at least two arguments, but only one was provided. "
                "Destination could not be determined"
            ),
        ),
        (
            "FROM alpine\nADD x\n",
            (
                "dockerfile parse error on line 2: ADD requires at least two arguments, but only one was provided. "
                "Destination could not be determined"
            ),
        ),
        (
            "FROM alpine\nCOPY a <<EOF\nx\nEOF\n",
            "dockerfile parse error on line 2: COPY cannot accept a heredoc as a destination",
        ),
        (
            "FROM alpine\nSHELL /bin/bash -c\n",
            "dockerfile parse error on line 2: SHELL requires the arguments to be in JSON form",
        ),
        ("FROM alpine\nSHELL []\n", "dockerfile parse error on line 2: SHELL requires at least one argument"),
        (
            "FROM alpine\nONBUILD\n",
            "dockerfile parse error on line 2: ONBUILD requires at least one argument",
        ),
        (
            "FROM alpine\nONBUILD ONBUILD RUN x\n",
            "dockerfile parse error on line 2: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
        ),
        (
            "FROM alpine\nONBUILD FROM x\n",
            "dockerfile parse error on line 2: FROM isn't allowed as an ONBUILD trigger",
        ),
        (
            "FROM alpine\nONBUILD MAINTAINER me\n",
            "dockerfile parse error on line 2: MAINTAINER isn't allowed as an ONBUILD trigger",
        ),
        ("FROM\n", "dockerfile parse error on line 1: FROM requires either one or three arguments"),
        ("FROM a b\n", "dockerfile parse error on line 1: FROM requires either one or three arguments"),
        ("FROM a AS b c\n", "dockerfile parse error on line 1: FROM requires either one or three arguments"),
        (
            "FROM a AS 1st\n",
            (
                'dockerfile parse error on line 1: invalid name for build stage: "1st", name can\'t start with a number '
                "or contain symbols"
            ),
        ),
        (
            "FROM a AS my$stage\n",
            (
                'dockerfile parse error on line 1: invalid name for build stage: "my$stage", name can\'t start with a '
                "number or contain symbols"
            ),
        ),
        ("ARG IMG\nFROM $IMG\n", "dockerfile parse error on line 2: base name ($IMG) should not be blank"),
        (
            "FROM ${IMG:?required}\n",
            'dockerfile parse error on line 1: failed to process "${IMG:?required}": IMG: required',
        ),
        ("FROM a\nFROM b\n", None),  # fine
        (
            "FROM alpine\nHEALTHCHECK\n",
            "dockerfile parse error on line 2: HEALTHCHECK requires at least one argument",
        ),
        (
            "FROM alpine\nHEALTHCHECK CMD\n",
            "dockerfile parse error on line 2: Missing command after HEALTHCHECK CMD",
        ),
        (
            "FROM alpine\nHEALTHCHECK NONE x\n",
            "dockerfile parse error on line 2: HEALTHCHECK NONE takes no arguments",
        ),
        (
            "FROM alpine\nHEALTHCHECK FOO x\n",
            'dockerfile parse error on line 2: Unknown type "FOO" in HEALTHCHECK (try CMD)',
        ),
        (
            "FROM alpine\nHEALTHCHECK --interval=1us CMD true\n",
            'dockerfile parse error on line 2: Interval "interval" cannot be less than 1ms',
        ),
        (
            "FROM alpine\nHEALTHCHECK --timeout=5 CMD true\n",
            'dockerfile parse error on line 2: time: missing unit in duration "5"',
        ),
        (
            "FROM alpine\nHEALTHCHECK --retries=-1 CMD true\n",
            "dockerfile parse error on line 2: --retries cannot be negative (-1)",
        ),
        (
            "FROM alpine\nHEALTHCHECK --retries=x CMD true\n",
            'dockerfile parse error on line 2: strconv.ParseInt: parsing "x": invalid syntax',
        ),
        (
            "FROM alpine\nHEALTHCHECK --foo=1 CMD true\n",
            "dockerfile parse error on line 2: Unknown flag: foo",
        ),
    ],
)
def test_docker_errors(text: str, message: str | None) -> None:
    if message is None:
        plan(text)
        return
    assert error(text) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FROM alpine\nCOPY --frm=x a b\n", "dockerfile parse error on line 2: Unknown flag: frm"),
        ("FROM alpine\nENV --foo=bar a=b\n", "dockerfile parse error on line 2: Unknown flag: foo"),
        (
            "FROM alpine\nCOPY --chown a b\n",
            "dockerfile parse error on line 2: Missing a value on flag: chown",
        ),
        (
            "FROM alpine\nCOPY --link= a b\n",
            "dockerfile parse error on line 2: Missing a value on flag: link",
        ),
        (
            "FROM alpine\nCOPY --link=yes a b\n",
            "dockerfile parse error on line 2: Expecting boolean value for flag link, not: yes",
        ),
        (
            "FROM alpine\nCOPY --from=a --from=b x y\n",
            "dockerfile parse error on line 2: Duplicate flag specified: from",
        ),
        (
            "FROM --platform linux/amd64 alpine\n",
            "dockerfile parse error on line 1: Missing a value on flag: platform",
        ),
        ("FROM alpine\nRUN --device=x true\n", "dockerfile parse error on line 2: Unknown flag: device"),
    ],
)
def test_flag_errors(text: str, message: str) -> None:
    assert error(text) == message


def test_flags_are_parsed_per_instruction() -> None:
    run = only("RUN --mount=type=bind,target=/a --mount=type=cache,target=/b true\n")
    assert run.flag_values("mount") == ["type=bind,target=/a", "type=cache,target=/b"]
    assert run.flag("mount") == "type=cache,target=/b"
    assert run.flag("network", "default") == "default"
    copy = only("COPY --link=FALSE --parents=True a b\n")
    assert copy.flags == {"link": ["false"], "parents": ["true"]}
    assert not copy.flag_true("link") and copy.flag_true("parents")
    none = only("HEALTHCHECK --interval=5s NONE\n")  # BuildKit ignores flags on NONE
    assert none.flags == {} and parse_healthcheck(none) == HealthConfig(test=["NONE"])


@pytest.mark.parametrize(
    "text",
    ["", "\n\n  \n", "# just a comment\n", "# syntax=docker/dockerfile:1\n# escape=`\n", "\ufeff\n"],
)
def test_empty_dockerfile(text: str) -> None:
    assert error(text) == "the Dockerfile (Dockerfile) cannot be empty"


def test_empty_dockerfile_names_the_file() -> None:
    with pytest.raises(InvalidArgument, match=r"the Dockerfile \(build/app\.Dockerfile\) cannot be empty"):
        make_plan("", {}, dockerfile_name="build/app.Dockerfile")


# --- parser directives ----------------------------------------------------------------------


def test_escape_directive_changes_continuation_and_is_recorded() -> None:
    text = "# escape=`\nFROM mcr.microsoft.com/windows/servercore\nRUN dir c:\\ `\n    && echo done\n"
    p = plan(text)
    assert p.escape == "`"
    (run,) = p.stages[0].instructions
    assert run.value[0].startswith("dir c:\\") and run.value[0].endswith("&& echo done")
    assert (run.line, run.end_line) == (3, 4)


@pytest.mark.parametrize(
    ("header", "escape", "syntax"),
    [
        ("# escape=`\n", "`", ""),
        ("#ESCAPE = `\n", "`", ""),
        ("# syntax=docker/dockerfile:1.7\n# escape=`\n", "`", "docker/dockerfile:1.7"),
        ("# escape=`\n# syntax=docker/dockerfile:1\n", "`", "docker/dockerfile:1"),
        ("\ufeff# escape=`\n", "`", ""),
        ("\n# escape=`\n", "\\", ""),  # a blank line ends the directives
        ("# comment\n# escape=`\n", "\\", ""),  # so does a plain comment
        ("# unknown=x\n# escape=`\n", "\\", ""),  # and an unknown directive
        ("# escape=\\\n", "\\", ""),
    ],
)
def test_directives(header: str, escape: str, syntax: str) -> None:
    p = plan(header + "FROM scratch\nRUN a `\nRUN b\n")
    assert (p.escape, p.syntax) == (escape, syntax)
    # The parser agrees: with a backtick the two lines are one RUN.
    assert len(p.stages[0].instructions) == (1 if escape == "`" else 2)


def test_directive_after_from_is_a_comment() -> None:
    p = plan("FROM scratch\n# escape=`\nRUN a\n")
    assert p.escape == "\\"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "# escape=x\nFROM a\n",
            "dockerfile parse error on line 1: invalid escape token 'x' does not match ` or \\",
        ),
        (
            "# escape=`\n# escape=\\\nFROM a\n",
            "dockerfile parse error on line 2: only one escape parser directive can be used",
        ),
    ],
)
def test_directive_errors(text: str, message: str) -> None:
    assert error(text) == message


def test_parse_directives_directly() -> None:
    assert parse_directives("# syntax = x/y:1 \n# Escape=`\nFROM a\n") == {"syntax": "x/y:1", "escape": "`"}
    assert parse_directives("FROM a\n") == {}


# --- meta ARGs and FROM ---------------------------------------------------------------------


def test_meta_args_expand_in_from() -> None:
    text = (
        "ARG REGISTRY=docker.io\nARG IMAGE=${REGISTRY}/library/python\nARG TAG\nFROM ${IMAGE}:${TAG:-3.11}\n"
    )
    p = plan(text)
    assert p.meta_args == {"REGISTRY": "docker.io", "IMAGE": "docker.io/library/python", "TAG": None}
    assert p.stages[0].base == "docker.io/library/python:3.11"
    assert plan(text, {"TAG": "3.12"}).stages[0].base == "docker.io/library/python:3.12"
    assert plan(text, {"REGISTRY": "ghcr.io"}).stages[0].base == "ghcr.io/library/python:3.11"
    # a build arg replaces the default before later defaults see it
    assert plan(text, {"IMAGE": "busybox"}).stages[0].base == "busybox:3.11"


def test_unset_meta_arg_is_unset_not_empty() -> None:
    p = plan("ARG V\nFROM alpine${V-:latest}\n")
    assert p.stages[0].base == "alpine:latest"


def test_build_args_are_not_visible_in_from_without_a_meta_arg() -> None:
    p = plan("FROM alpine:${TAG:-3.19}\n", {"TAG": "edge"})
    assert p.stages[0].base == "alpine:3.19"


def test_platform_args_are_global() -> None:
    p = plan("FROM --platform=$BUILDPLATFORM golang:1.22-$TARGETOS-$TARGETARCH\n")
    assert p.stages[0].platform == "linux/amd64"
    assert p.stages[0].base == "golang:1.22-linux-amd64"
    assert p.global_args["TARGETPLATFORM"] == "linux/amd64"
    assert p.global_args["TARGETVARIANT"] == ""
    arm = make_plan("FROM alpine:$TARGETARCH$TARGETVARIANT\n", {}, platform="linux/arm/v7")
    assert arm.stages[0].base == "alpine:armv7"


def test_bare_meta_arg_keeps_a_predefined_value() -> None:
    p = plan("ARG TARGETPLATFORM\nFROM --platform=$TARGETPLATFORM alpine\n")
    assert p.stages[0].platform == "linux/amd64"
    assert p.meta_args == {"TARGETPLATFORM": "linux/amd64"}


def test_meta_arg_default_errors_have_a_line() -> None:
    assert error("ARG A=${B:?need-B}\nFROM x\n") == (
        'dockerfile parse error on line 1: failed to process "${B:?need-B}": B: need-B'
    )


def test_stage_instructions_are_not_expanded_by_the_plan() -> None:
    p = plan("ARG V=1\nFROM alpine\nENV X=$V\nCOPY ${SRC} /dst\n")
    env, copy = p.stages[0].instructions
    assert env.pairs() == [("X", "$V")]
    assert copy.value == ["${SRC}", "/dst"]


# --- ARG inside a stage (resolve_arg) -------------------------------------------------------


def test_resolve_arg_scoping() -> None:
    p = plan("ARG VERSION=1.0\nARG EMPTY\nFROM alpine\nARG VERSION\nARG OTHER=x\n")
    g = p.global_args
    # a bare ARG re-imports the meta value
    assert resolve_arg("VERSION", None, build_args={}, global_args=g, env={}) == "1.0"
    # --build-arg wins over the default and over the meta value
    assert resolve_arg("VERSION", None, build_args={"VERSION": "2"}, global_args=g, env={}) == "2"
    assert resolve_arg("OTHER", "x", build_args={"OTHER": "y"}, global_args=g, env={}) == "y"
    # a default is expanded with the stage's environment at that point
    assert resolve_arg("DIR", "$HOME/app", build_args={}, global_args=g, env={"HOME": "/root"}) == "/root/app"
    # declared without value and not global: unset
    assert resolve_arg("NOPE", None, build_args={}, global_args=g, env={}) is None
    assert resolve_arg("EMPTY", None, build_args={}, global_args=g, env={}) is None
    # predefined platform ARGs come in with a bare ARG
    assert resolve_arg("TARGETARCH", None, build_args={}, global_args=g, env={}) == "amd64"
    # the escape character of the Dockerfile applies to the default
    assert resolve_arg("P", "`$HOME", build_args={}, global_args=g, env={"HOME": "h"}, escape="`") == "$HOME"


def test_predefined_args() -> None:
    assert platform_args() == {
        "TARGETPLATFORM": "linux/amd64",
        "TARGETOS": "linux",
        "TARGETARCH": "amd64",
        "TARGETVARIANT": "",
        "BUILDPLATFORM": "linux/amd64",
        "BUILDOS": "linux",
        "BUILDARCH": "amd64",
        "BUILDVARIANT": "",
    }
    assert set(PROXY_ARGS) == {
        "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
        "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
    }  # fmt: skip
    assert proxy_args({"http_proxy": "http://p:3128", "FOO": "x", "NO_PROXY": "localhost"}) == {
        "http_proxy": "http://p:3128",
        "NO_PROXY": "localhost",
    }


def test_unused_build_args() -> None:
    text = "ARG META\nFROM alpine AS a\nARG USED_IN_A\nFROM alpine\nARG USED\n"
    args = {"META": "1", "USED": "1", "USED_IN_A": "1", "UNUSED": "1", "HTTP_PROXY": "x", "TARGETOS": "y"}
    assert make_plan(text, args).unused_build_args() == ["UNUSED", "USED_IN_A"]  # stage a is not built
    assert make_plan(text, args, target="a").unused_build_args() == ["UNUSED", "USED"]


# --- stages, --target and what gets built ---------------------------------------------------

MULTI = """\
FROM golang:1.22 AS deps
RUN go mod download
FROM deps AS build
RUN go build -o /app
FROM build AS test
RUN go test ./...
FROM alpine AS assets
RUN echo assets > /assets
FROM gcr.io/distroless/static AS final
COPY --from=build /app /app
COPY --from=assets /assets /assets
COPY --from=nginx:latest /etc/nginx/nginx.conf /etc/
"""


def test_target_needs_only_its_dependencies() -> None:
    p = plan(MULTI)
    assert [s.name for s in p.stages] == ["deps", "build", "test", "assets", "final"]
    assert p.stages[1].base == "deps" and p.stages[1].base_stage == 0
    assert p.stages[4].depends_on == [1, 3]  # nginx:latest is an image, not a stage
    assert p.target.name == "final"
    assert p.needed == [0, 1, 3, 4]  # "test" is not built
    assert plan(MULTI, target="test").needed == [0, 1, 2]
    assert plan(MULTI, target="assets").needed == [3]
    assert plan(MULTI, target="TEST").target.name == "test"  # names are case-insensitive


def test_target_not_found() -> None:
    assert error(MULTI, target="nope") == 'target stage "nope" could not be found'
    assert error("FROM alpine\n", target="x") == 'target stage "x" could not be found'


def test_copy_from_index_and_mount_from() -> None:
    text = """\
FROM alpine
RUN echo zero
FROM alpine AS tools
FROM busybox
COPY --from=0 /a /a
RUN --mount=type=bind,from=tools,source=/bin,target=/tools ls /tools
RUN --mount=type=cache,target=/c true
"""
    p = plan(text)
    assert p.stages[2].depends_on == [0, 1]
    assert p.needed == [0, 1, 2]
    assert p.stage("0") is p.stages[0]
    assert p.stage("TOOLS") is p.stages[1]
    assert p.stage("alpine:3.19") is None
    with pytest.raises(InvalidArgument, match="invalid stage index 9"):
        p.stage("9")


def test_copy_from_a_later_stage_is_built_first() -> None:
    text = "FROM alpine AS first\nCOPY --from=second /x /x\nFROM alpine AS second\nRUN touch /x\n"
    p = plan(text, target="first")
    assert p.needed == [1, 0]


def test_from_only_sees_earlier_stages() -> None:
    # "FROM base AS base": the image, not itself; a later stage of that name is not consulted.
    p = plan("FROM later AS first\nFROM alpine AS later\n")
    assert p.stages[0].base_stage is None and p.stages[0].depends_on == []
    p = plan("FROM golang AS golang\n")
    assert p.stages[0].base_stage is None


def test_repeated_stage_name_means_the_latest() -> None:
    p = plan("FROM a AS x\nFROM b AS x\nFROM x\n")
    assert p.stages[2].base_stage == 1
    assert plan("FROM a AS x\nFROM b AS x\n", target="x").target.index == 1


def test_stage_refs_are_literal() -> None:
    # BuildKit does not expand COPY --from: "$SRC" is an image reference (which will fail later).
    p = plan("ARG SRC=build\nFROM alpine AS build\nFROM alpine\nCOPY --from=$SRC /a /a\n")
    assert p.stages[1].depends_on == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FROM a\nCOPY --from=5 /a /a\n", "dockerfile parse error on line 2: invalid stage index 5"),
        ("FROM a\nCOPY --from=-1 /a /a\n", "dockerfile parse error on line 2: invalid stage index -1"),
        ("FROM a\nRUN --mount=from=3 true\n", "dockerfile parse error on line 2: invalid stage index 3"),
        ("FROM a AS x\nCOPY --from=x /a /a\n", "circular dependency detected on stage: x"),
        ("FROM a\nCOPY --from=0 /a /a\n", "circular dependency detected on stage: 0"),
        (
            "FROM a AS x\nCOPY --from=y /a /a\nFROM b AS y\nCOPY --from=x /b /b\n",
            "circular dependency detected on stage: x",
        ),
    ],
)
def test_stage_reference_errors(text: str, message: str) -> None:
    assert error(text) == message


def test_errors_in_unneeded_stages_still_fail() -> None:
    text = "FROM alpine AS unused\nRUNN typo\nFROM alpine\n"
    assert error(text) == "dockerfile parse error on line 2: unknown instruction: RUNN"


# --- heredocs -------------------------------------------------------------------------------


def test_heredoc_details() -> None:
    text = (
        "FROM alpine\n"
        "RUN <<-EOT bash\n\techo tabbed\n\t\tEOT-not-yet\n\tEOT\n"
        'COPY <<EOF <<"RAW" /dst/\nhello $NAME\nEOF\nliteral $NAME\nRAW\n'
        "RUN 3<<EOF cat <&3\nfd three\nEOF\n"
    )
    chomped, copy, fd = plan(text).stages[0].instructions
    (h,) = chomped.heredocs
    assert (h.name, h.chomp, h.expand) == ("EOT", True, True)
    assert h.content == "echo tabbed\nEOT-not-yet\n"
    assert copy.value == ["<<EOF", '<<"RAW"', "/dst/"]
    assert [(h.name, h.content, h.expand) for h in copy.heredocs] == [
        ("EOF", "hello $NAME\n", True),
        ("RAW", "literal $NAME\n", False),
    ]
    assert fd.heredocs[0].file_descriptor == 3 and fd.value == ["3<<EOF cat <&3"]


# --- ONBUILD --------------------------------------------------------------------------------


def test_onbuild_triggers_as_docker_stores_them() -> None:
    text = (
        "FROM alpine\n"
        "ONBUILD COPY --chown=1:1 . /app\n"
        "onbuild   RUN echo \\\n  continued\n"
        'ONBUILD CMD ["x"]\n'
        "ONBUILD RUN <<EOF\necho from heredoc\nEOF\n"
    )
    copy, run, cmd, heredoc = plan(text).stages[0].instructions
    assert all(i.kind == "ONBUILD" for i in (copy, run, cmd, heredoc))
    assert (copy.sub_kind, copy.trigger) == ("COPY", "COPY --chown=1:1 . /app")
    assert (run.sub_kind, run.trigger) == ("RUN", "RUN echo   continued")
    assert (cmd.sub_kind, cmd.trigger) == ("CMD", 'CMD ["x"]')
    assert heredoc.trigger == "RUN <<EOF\necho from heredoc\nEOF"
    assert not expands_variables("ONBUILD")


def test_onbuild_trigger_is_only_checked_in_the_child_build() -> None:
    # BuildKit stores any trigger but ONBUILD/FROM/MAINTAINER; a bad one fails where it runs.
    trigger = only("ONBUILD FOO bar\n")
    assert (trigger.sub_kind, trigger.trigger) == ("FOO", "FOO bar")
    assert not trigger.expands_variables and only("WORKDIR /x\n").expands_variables


def test_parse_onbuild_triggers_round_trip() -> None:
    text = "FROM alpine\nONBUILD COPY --chown=1:1 . /app\nONBUILD RUN <<EOF\necho hi\nEOF\nONBUILD ENV A=$B\n"
    triggers = [i.trigger for i in plan(text).stages[0].instructions]
    copy, run, env = parse_onbuild_triggers(triggers)
    assert copy.kind == "COPY" and copy.flags == {"chown": ["1:1"]} and copy.value == [".", "/app"]
    assert run.kind == "RUN" and run.heredocs[0].content == "echo hi\n"
    assert env.pairs() == [("A", "$B")]


@pytest.mark.parametrize(
    ("trigger", "message"),
    [
        ("ONBUILD RUN x", "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
        ("FROM alpine", "FROM isn't allowed as an ONBUILD trigger"),
        ("FOO bar", "unknown instruction: FOO"),
        ("RUN a\nRUN b", "onbuild trigger should be a single expression"),
    ],
)
def test_parse_onbuild_triggers_rejects(trigger: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_onbuild_triggers([trigger])


# --- what the builder expands ----------------------------------------------------------------


def test_expanding_instruction_list_is_dockers() -> None:
    assert EXPANDING_INSTRUCTIONS == {
        "ADD", "ARG", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
    }  # fmt: skip
    for kind in ("RUN", "CMD", "ENTRYPOINT", "ONBUILD", "HEALTHCHECK", "SHELL", "MAINTAINER"):
        assert not expands_variables(kind)
    assert expands_variables("workdir")


ENV = {"HOME": "/root", "PORTS": "80 443/udp", "USER": "app", "V": "1.2", "SP": "a b"}


@pytest.mark.parametrize(
    ("line", "value"),
    [
        ('ENV PATH=$HOME/bin:$PATH GREETING="hello $USER"', ["PATH", "/root/bin:", "GREETING", "hello app"]),
        ("ENV OLD $HOME/x", ["OLD", "/root/x"]),
        ('LABEL "$USER.label"=v$V', ["app.label", "v1.2"]),
        ("ARG A=$V B", ["A=1.2", "B"]),
        ("EXPOSE $PORTS 8080", ["80", "443/udp", "8080"]),
        ("VOLUME $HOME/data /x", ["/root/data", "/x"]),
        ('VOLUME ["$HOME/json"]', ["/root/json"]),
        ("USER $USER:$USER", ["app:app"]),
        ("WORKDIR ${HOME}/src", ["/root/src"]),
        ("STOPSIGNAL ${SIG:-SIGTERM}", ["SIGTERM"]),
        ('COPY "$SP" ${HOME}/dst/', ["a b", "/root/dst/"]),
        ("ADD \\$HOME.txt /", ["$HOME.txt", "/"]),
        ("RUN echo $HOME", ["echo $HOME"]),
        ('CMD ["echo", "$HOME"]', ["echo", "$HOME"]),
        ("ENTRYPOINT echo $HOME", ["echo $HOME"]),
        ("ONBUILD RUN echo $HOME", ["echo $HOME"]),
    ],
)
def test_expand_instruction_values(line: str, value: list[str]) -> None:
    assert expand_instruction(only(line + "\n"), ENV).value == value


def test_expand_instruction_flags_and_heredocs() -> None:
    copy = only("COPY --chown=$USER:$USER --chmod=${MODE:-644} --from=$USER a b\n")
    expanded = expand_instruction(copy, ENV)
    assert expanded.flags == {"chown": ["app:app"], "chmod": ["644"], "from": ["$USER"]}
    assert copy.flags["chown"] == ["$USER:$USER"]  # the original is untouched
    add = only("ADD --checksum=$SUM https://x/y.tgz /\n")
    assert expand_instruction(add, {"SUM": "sha256:abc"}).flag("checksum") == "sha256:abc"
    run = only('RUN --mount=type=cache,target=$HOME/.cache,from=$USER --mount="type=bind,src=$V" true\n')
    assert expand_instruction(run, ENV).flag_values("mount") == [
        "type=cache,target=/root/.cache,from=$USER",
        "type=bind,src=1.2",
    ]
    heredoc = only('COPY <<EOF <<"RAW" /etc/\nuser="$USER"\nEOF\nkeep $USER\nRAW\n')
    bodies = [h.content for h in expand_instruction(heredoc, ENV).heredocs]
    assert bodies == ['user="app"\n', "keep $USER\n"]
    assert expand_instruction(heredoc, ENV).value == ["<<EOF", '<<"RAW"', "/etc/"]


def test_expand_instruction_uses_the_escape_character() -> None:
    workdir = only("WORKDIR c:\\$USER\n")
    assert expand_instruction(workdir, ENV, escape="`").value == ["c:\\app"]
    assert expand_instruction(workdir, ENV).value == ["c:$USER"]


def test_expand_instruction_errors() -> None:
    with pytest.raises(InvalidArgument, match="REQUIRED: must be set"):
        expand_instruction(only("WORKDIR ${REQUIRED:?must be set}\n"), {})


def test_from_instruction_is_left_alone() -> None:
    p = plan("ARG X=alpine\nFROM $X\n")
    assert p.stages[0].from_instruction is not None
    assert expand_instruction(p.stages[0].from_instruction, {"X": "other"}).value == ["$X"]


# --- HEALTHCHECK and durations ------------------------------------------------------------------


def test_healthcheck_forms() -> None:
    assert parse_healthcheck(only('HEALTHCHECK CMD ["curl", "-f", "x"]\n')).test == ["CMD", "curl", "-f", "x"]
    assert parse_healthcheck(only("healthcheck cmd curl -f x\n")).test == ["CMD-SHELL", "curl -f x"]
    assert parse_healthcheck(only("HEALTHCHECK none\n")).test == ["NONE"]
    zero = parse_healthcheck(only("HEALTHCHECK --interval=0s --retries=0 CMD true\n"))
    assert (zero.interval, zero.retries) == (0, 0)


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("0", 0),
        ("1ns", 1),
        ("1.5s", 1_500_000_000),
        ("1m30s", 90 * 10**9),
        ("2h", 7200 * 10**9),
        ("300ms", 300_000_000),
        ("10us", 10_000),
        ("10µs", 10_000),
        ("-1s", -(10**9)),
        ("+.5m", 30 * 10**9),
        ("1h2m3.004s", 3723_004_000_000),
    ],
)
def test_go_durations(text: str, ns: int) -> None:
    assert parse_go_duration(text) == ns


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", 'time: invalid duration ""'),
        ("s", 'time: invalid duration "s"'),
        ("5", 'time: missing unit in duration "5"'),
        ("5d", 'time: unknown unit "d" in duration "5d"'),
        (".s", 'time: invalid duration ".s"'),
    ],
)
def test_go_duration_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_go_duration(text)
    assert str(info.value) == message


# --- house rules --------------------------------------------------------------------------------


@pytest.mark.parametrize("module", ["plan.py", "expand.py", "dockerignore.py"])
def test_pure_modules_import_no_io(module: str) -> None:
    source = (Path(plan_module.__file__).parent / module).read_text()
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"os", "subprocess", "socket", "shutil", "pathlib"}
