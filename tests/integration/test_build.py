"""``dockyard build`` end to end on real runc, overlay and netavark: every instruction, multi-stage
builds, contexts, the cache, errors in Docker's words, and the Flask example answering on :5000."""

from __future__ import annotations

import http.server
import io
import json
import os
import subprocess
import tarfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import cached_image_archive

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def build(d, ctx: Path | str, *args: str, check: bool = True, input: bytes | None = None):
    return d("build", "--progress=plain", *args, str(ctx), check=check, input=input)


def inspect(d, name: str) -> dict:
    return json.loads(d("image", "inspect", name).stdout)[0]


def config(d, name: str) -> dict:
    """The image's OCI config as stored (history with empty_layer, as Docker writes it)."""
    out = Path(d.root).parent / "save.tar"
    d("save", "-o", str(out), name)
    with tarfile.open(out) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))[0]
        cfg = json.load(tf.extractfile(manifest["Config"]))
    out.unlink()
    return cfg


def layer_names(d, name: str) -> list[list[str]]:
    """The entry names of each layer of an image, bottom first."""
    out = Path(d.root).parent / "layers.tar"
    d("save", "-o", str(out), name)
    with tarfile.open(out) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))[0]
        layers = []
        for layer in manifest["Layers"]:
            with tarfile.open(fileobj=tf.extractfile(layer)) as lt:
                layers.append(lt.getnames())
    out.unlink()
    return layers


def ran(stderr: str, line: str) -> bool:
    """Whether a step printed ``line`` (plain progress: ``#5 0.123 line``), not just named it."""
    import re

    return re.search(r"^#\d+ \d+\.\d+ " + re.escape(line) + "$", stderr, re.MULTILINE) is not None


def image_ids(d) -> set[str]:
    return set(d("images", "-aq", "--no-trunc").stdout.split())


def test_every_instruction_config_and_history(busybox, tmp_path):
    ctx = write(tmp_path / "ctx", {
        "hello.txt": "hello\n",
        "dir/a.txt": "a\n",
        "dir/sub/b.txt": "b\n",
        "Dockerfile": """\
FROM busybox
MAINTAINER Jane Doe <jane@example.com>
ARG GREETING=hi
ENV APP_HOME=/srv/app PATH=/srv/app/bin:$PATH
ENV LEGACY value with spaces
LABEL org.example.name="demo app" version=1.0
WORKDIR $APP_HOME
COPY hello.txt .
COPY dir /srv/dir/
ADD dir/a.txt /srv/added/
RUN echo "$GREETING from $APP_HOME" > greeting.txt && mkdir -p bin
RUN ["/bin/sh", "-c", "echo exec-form > /srv/exec.txt"]
SHELL ["/bin/sh", "-e", "-c"]
RUN echo "shell is $0" > /srv/shell.txt
EXPOSE 8080 9000/udp
VOLUME /data
USER nobody
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --timeout=2s --retries=2 CMD wget -q -O- http://localhost:8080/ || exit 1
ONBUILD RUN echo triggered > /tmp/onbuild.txt
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /srv/app/greeting.txt"]
""",
    })
    p = build(busybox, ctx, "-t", "every:1")
    assert "#" in p.stderr and "DONE" in p.stderr
    info = inspect(busybox, "every:1")
    c = info["Config"]
    assert c["Env"] == ["PATH=/srv/app/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                        "APP_HOME=/srv/app", "LEGACY=value with spaces"]
    assert c["Labels"]["org.example.name"] == "demo app" and c["Labels"]["version"] == "1.0"
    assert c["WorkingDir"] == "/srv/app"
    assert c["ExposedPorts"] == {"8080/tcp": {}, "9000/udp": {}}
    assert c["Volumes"] == {"/data": {}}
    assert c["User"] == "nobody"
    assert c["StopSignal"] == "SIGINT"
    assert c["Healthcheck"] == {"Test": ["CMD-SHELL", "wget -q -O- http://localhost:8080/ || exit 1"],
                                "Interval": 5_000_000_000, "Timeout": 2_000_000_000, "Retries": 2}
    assert c["Shell"] == ["/bin/sh", "-e", "-c"]
    assert c["OnBuild"] == ["RUN echo triggered > /tmp/onbuild.txt"]
    assert c["Entrypoint"] == ["/bin/sh", "-c"] and c["Cmd"] == ["cat /srv/app/greeting.txt"]
    assert info["Author"] == "Jane Doe <jane@example.com>"
    # history in BuildKit's form; metadata steps are empty layers
    cfg = config(busybox, "every:1")
    history = [(h["created_by"], bool(h.get("empty_layer"))) for h in cfg["history"][1:]]
    assert history == [
        ("MAINTAINER Jane Doe <jane@example.com>", True),
        ("ARG GREETING=hi", True),
        ("ENV APP_HOME=/srv/app PATH=/srv/app/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
         True),
        ("ENV LEGACY=value with spaces", True),
        ("LABEL org.example.name=demo app version=1.0", True),
        ("WORKDIR /srv/app", False),
        ("COPY hello.txt . # buildkit", False),
        ("COPY dir /srv/dir/ # buildkit", False),
        ("ADD dir/a.txt /srv/added/ # buildkit", False),
        ('RUN |1 GREETING=hi /bin/sh -c echo "$GREETING from $APP_HOME" > greeting.txt && mkdir -p bin # buildkit',
         False),
        ("RUN |1 GREETING=hi /bin/sh -c echo exec-form > /srv/exec.txt # buildkit", False),
        ("SHELL [/bin/sh -e -c]", True),
        ("RUN |1 GREETING=hi /bin/sh -e -c echo \"shell is $0\" > /srv/shell.txt # buildkit", False),
        ("EXPOSE map[8080/tcp:{} 9000/udp:{}]", True),
        ("VOLUME [/data]", True),
        ("USER nobody", True),
        ("STOPSIGNAL SIGINT", True),
        ('HEALTHCHECK &{["CMD-SHELL" "wget -q -O- http://localhost:8080/ || exit 1"] "5s" "2s" "0s" "0s" \'\\x02\'}',
         True),
        ("ONBUILD RUN echo triggered > /tmp/onbuild.txt", True),
        ('ENTRYPOINT ["/bin/sh" "-c"]', True),
        ('CMD ["cat /srv/app/greeting.txt"]', True),
    ]
    assert all(h.get("comment") == "buildkit.dockerfile.v0" for h in cfg["history"][1:])
    assert len(cfg["rootfs"]["diff_ids"]) == 1 + sum(1 for _, empty in history if not empty)
    # what the steps did, seen from a container of the image
    out = busybox("run", "--rm", "--entrypoint", "sh", "every:1", "-c",
                  "cat /srv/app/hello.txt /srv/dir/a.txt /srv/dir/sub/b.txt /srv/added/a.txt greeting.txt "
                  "/srv/exec.txt /srv/shell.txt; ls -ln /srv/app/hello.txt; test -d bin && echo bin-ok").stdout
    assert out.splitlines()[:7] == ["hello", "a", "b", "a", "hi from /srv/app", "exec-form", "shell is /bin/sh"]
    assert " 0 " in out.splitlines()[7] and "bin-ok" in out
    assert busybox("run", "--rm", "every:1").stdout == "hi from /srv/app\n"
    # RUN layers hold what the command wrote, not the mount points runc made (resolv.conf, /proc, ...)
    for names in layer_names(busybox, "every:1")[1:]:
        assert not [n for n in names if n.split("/")[0] in ("etc", "proc", "sys", "dev", "data")], names
    # ONBUILD triggers run in a child build, right after FROM; the child does not inherit them
    child = write(tmp_path / "child", {"Dockerfile": "FROM every:1\nUSER root\nRUN cat /tmp/onbuild.txt\n"})
    p = build(busybox, child, "-t", "child:1")
    assert "ONBUILD RUN echo triggered > /tmp/onbuild.txt" in p.stderr and "triggered" in p.stderr
    assert inspect(busybox, "child:1")["Config"]["OnBuild"] is None
    # skopeo reads the image with the same config
    archive = tmp_path / "every.tar"
    busybox("save", "-o", str(archive), "every:1")
    seen = json.loads(subprocess.run(["skopeo", "inspect", "--config", f"docker-archive:{archive}"],
                                     capture_output=True, text=True, check=True).stdout)
    assert seen["config"]["Env"] == c["Env"] and seen["config"]["Cmd"] == c["Cmd"]
    assert [h.get("created_by") for h in seen["history"]] == [h.get("created_by") for h in cfg["history"]]


def test_multistage_target_copy_from_stage_index_and_image(busybox, tmp_path):
    ctx = write(tmp_path, {"Dockerfile": """\
FROM busybox AS build
RUN mkdir /out && echo built > /out/artifact && echo second > /out/other

FROM busybox AS broken
RUN echo this stage must not run && exit 7

FROM scratch AS final
COPY --from=build /out/artifact /artifact
COPY --from=0 /out/other /other
COPY --from=busybox /bin/busybox /bin/busybox
CMD ["/bin/busybox", "cat", "/artifact", "/other"]

FROM build AS tested
RUN test -f /out/artifact && echo tested-ok
"""})
    p = build(busybox, ctx, "--target", "final", "-t", "ms:final")
    assert "must not run" not in p.stderr and "[broken" not in p.stderr and "tested-ok" not in p.stderr
    assert busybox("run", "--rm", "ms:final").stdout == "built\nsecond\n"
    info = inspect(busybox, "ms:final")
    assert len(info["RootFS"]["Layers"]) == 3  # from scratch: one layer per COPY
    # the last stage is the default target; a stage FROM another stage builds on its result
    p = build(busybox, ctx, "-t", "ms:tested")
    assert "tested-ok" in p.stderr and "must not run" not in p.stderr
    # the broken stage fails when asked for
    p = build(busybox, ctx, "--target", "broken", "-t", "ms:broken", check=False)
    assert p.returncode == 1
    assert 'process "/bin/sh -c echo this stage must not run && exit 7" did not complete successfully: exit code: 7' \
        in p.stderr
    assert busybox("images", "-q", "ms:broken").stdout == ""


def test_dockerignore_end_to_end(busybox, tmp_path):
    ctx = write(tmp_path, {
        "app.py": "app", "README.md": "readme", "docs/guide.md": "guide", "docs/keep.md": "keep",
        "node_modules/x/index.js": "x", "src/a.txt": "a", "src/b.log": "b", "top.log": "t",
        ".dockerignore": "# comment\nnode_modules\ndocs\n*.log\n**/*.md\n!README.md\n!docs/keep.md\nDockerfile\n",
        "Dockerfile": "FROM busybox\nCOPY . /ctx\nRUN cd /ctx && find . | sort\n",
    })
    p = build(busybox, ctx, "-t", "ign")
    listed = [line.split(" ", 2)[2] for line in p.stderr.splitlines()
              if line.startswith("#") and len(line.split(" ", 2)) == 3 and line.split(" ", 2)[2].startswith(".")]
    assert listed == [".", "./.dockerignore", "./README.md", "./app.py", "./docs", "./docs/keep.md", "./src",
                      "./src/a.txt", "./src/b.log"]
    # an excluded file is not in the context: COPY says so
    write(tmp_path, {"Dockerfile": "FROM busybox\nCOPY top.log /x\n"})
    p = build(busybox, ctx, check=False)
    assert p.returncode == 1
    assert '"/top.log": not found' in p.stderr and ".dockerignore" in p.stderr
    # a Dockerfile-specific ignore file beside the Dockerfile wins over .dockerignore
    write(tmp_path, {"other.Dockerfile": "FROM busybox\nCOPY top.log /x\nRUN cat /x\n",
                     "other.Dockerfile.dockerignore": "app.py\n"})
    p = build(busybox, ctx, "-f", str(tmp_path / "other.Dockerfile"))
    assert "#" in p.stderr and " t" in p.stderr


def test_contexts_stdin_tar_dockerfile_only_and_outside_dockerfile(busybox, tmp_path):
    ctx = write(tmp_path / "ctx", {"data.txt": "from the tar\n",
                                   "Dockerfile": "FROM busybox\nCOPY data.txt /\nRUN cat /data.txt\n"})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(ctx, arcname=".")
    p = busybox("build", "--progress=plain", "-t", "fromtar", "-", input=buf.getvalue())
    assert "from the tar" in p.stderr
    # a Dockerfile alone on stdin: no context
    p = busybox("build", "-q", "-t", "dfonly", "-", input=b"FROM busybox\nRUN echo only > /only\n")
    assert p.stdout.startswith("sha256:")
    assert busybox("run", "--rm", "dfonly", "cat", "/only").stdout == "only\n"
    p = busybox("build", "-", input=b"FROM busybox\nCOPY data.txt /\n", check=False)
    assert p.returncode == 1 and '"/data.txt": not found' in p.stderr
    # -f outside the context, and -f - with a directory context
    outside = write(tmp_path / "elsewhere", {"Build.df": "FROM busybox\nCOPY data.txt /copied\n"})
    busybox("build", "-q", "-t", "outside", "-f", str(outside / "Build.df"), str(ctx))
    assert busybox("run", "--rm", "outside", "cat", "/copied").stdout == "from the tar\n"
    p = busybox("build", "-q", "-t", "dfstdin", "-f", "-", str(ctx), input=b"FROM busybox\nCOPY . /c\n")
    assert busybox("run", "--rm", "dfstdin", "ls", "/c").stdout.split() == ["Dockerfile", "data.txt"]
    # a hostile tar context cannot write outside its directory
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w") as tf:
        info = tarfile.TarInfo("../../escaped")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
        df = b"FROM busybox\n"
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(df)
        tf.addfile(info, io.BytesIO(df))
    p = busybox("build", "-", input=evil.getvalue(), check=False)
    assert p.returncode == 1
    assert not (Path(busybox.root) / "build" / "escaped").exists() and not Path(busybox.root, "escaped").exists()
    assert os.listdir(Path(busybox.root) / "build" / "tmp") == []


def test_cache_hits_no_container_and_invalidation(busybox, tmp_path):
    ctx = write(tmp_path, {"a.txt": "one\n", "b.txt": "bee\n", "Dockerfile": """\
FROM busybox
RUN echo first-run-marker && echo base > /base
COPY a.txt /a.txt
RUN echo second-run-marker && cat /a.txt > /copy
COPY b.txt /b.txt
"""})
    first = build(busybox, ctx, "-t", "cached")
    assert ran(first.stderr, "first-run-marker")
    image = inspect(busybox, "cached")["Id"]
    before = image_ids(busybox)
    snapshots = set(os.listdir(Path(busybox.root) / "snapshots"))
    t0 = time.monotonic()
    second = build(busybox, ctx, "-t", "cached")
    took = time.monotonic() - t0
    assert inspect(busybox, "cached")["Id"] == image
    assert not ran(second.stderr, "first-run-marker") and not ran(second.stderr, "second-run-marker")
    assert second.stderr.count("CACHED") == 4
    assert image_ids(busybox) == before and set(os.listdir(Path(busybox.root) / "snapshots")) == snapshots
    assert took < 5
    # a changed file invalidates its COPY and everything after it, not what comes before
    write(tmp_path, {"a.txt": "two\n"})
    third = build(busybox, ctx, "-t", "cached")
    assert not ran(third.stderr, "first-run-marker") and ran(third.stderr, "second-run-marker")
    assert third.stderr.count("CACHED") == 1
    assert busybox("run", "--rm", "cached", "cat", "/copy").stdout == "two\n"
    # a mode change counts too
    os.chmod(tmp_path / "b.txt", 0o600)
    assert build(busybox, ctx).stderr.count("CACHED") == 3
    # --no-cache runs everything and makes a new image
    fourth = build(busybox, ctx, "--no-cache", "-t", "cached")
    assert ran(fourth.stderr, "first-run-marker") and "CACHED" not in fourth.stderr
    # the cache serves other processes (it lives in the store) and other tags
    assert busybox("build", "-q", "-t", "other", str(ctx)).stdout.strip() == inspect(busybox, "cached")["Id"]


def test_builder_prune(busybox, tmp_path):
    ctx = write(tmp_path, {"Dockerfile": "FROM busybox\nRUN echo x > /x\nENV A=1\nRUN echo y > /y\n"})
    base = image_ids(busybox)
    build(busybox, ctx, "-t", "pruned")
    build(busybox, ctx, "-t", "pruned2")
    assert len(image_ids(busybox)) > len(base) + 1
    # the intermediate images are hidden from `images` (shown with -a), as Docker's classic builder does
    assert set(busybox("images", "--format", "{{.Repository}}").stdout.split()) == {"pruned", "pruned2", "busybox"}
    # dangling-only keeps what tagged images are built from
    out = busybox("builder", "prune", "-f").stdout
    assert out.strip().endswith("Total reclaimed space: 0B")
    assert "CACHED" in build(busybox, ctx).stderr
    busybox("rmi", "pruned", "pruned2")
    out = busybox("builder", "prune", "-a", "-f").stdout
    assert "Deleted build cache objects:" in out and "Total reclaimed space:" in out
    assert image_ids(busybox) == base
    assert "CACHED" not in build(busybox, ctx).stderr
    p = busybox("builder", "prune", "-f", "--filter", "until=24h")
    assert p.returncode == 0


def test_build_args_and_predefined_args(busybox, tmp_path):
    ctx = write(tmp_path, {"Dockerfile": """\
ARG TAG=latest
FROM busybox:${TAG}
ARG WHO=nobody
ARG FROM_ENV
ARG TARGETARCH
ARG TARGETPLATFORM
RUN echo "who=$WHO env=$FROM_ENV arch=$TARGETARCH plat=$TARGETPLATFORM proxy=$http_proxy"
ENV WHO=overridden
RUN echo "now=$WHO"
"""})
    p = busybox("build", "--progress=plain", "--build-arg", "WHO=me", "--build-arg", "FROM_ENV",
                "--build-arg", "http_proxy=http://proxy.invalid:3128", "--build-arg", "NOT_USED=1",
                "-t", "args", str(ctx), env={"FROM_ENV": "from-the-environment"})
    assert "who=me env=from-the-environment arch=amd64 plat=linux/amd64 proxy=http://proxy.invalid:3128" \
        in p.stderr
    assert "now=overridden" in p.stderr
    assert "[Warning] One or more build-args [NOT_USED] were not consumed" in p.stderr
    history = [h["created_by"] for h in config(busybox, "args")["history"]]
    assert any(h.startswith("RUN |4 WHO=me FROM_ENV=from-the-environment TARGETARCH=amd64 "
                            "TARGETPLATFORM=linux/amd64 /bin/sh -c echo") for h in history)
    assert not any("proxy.invalid" in h for h in history)  # proxy args stay out of the history
    # a different build arg value is a different step
    p = busybox("build", "--progress=plain", "--build-arg", "WHO=you", str(ctx))
    assert "who=you" in p.stderr


def test_run_heredoc_exec_form_network_and_hosts(busybox, tmp_path):
    ctx = write(tmp_path, {"Dockerfile": """\
FROM busybox
RUN <<EOF
echo heredoc-line-1 > /h
echo heredoc-line-2 >> /h
EOF
RUN <<EOF
#!/bin/sh
echo "script at $0" > /script
EOF
RUN cat > /fromcat <<EOF
cat-heredoc
EOF
RUN ["sh", "-c", "echo exec > /exec"]
RUN --network=none sh -c 'ip -o link | grep -v " lo:" | wc -l > /links'
RUN grep myhost /etc/hosts > /hosts
COPY <<EOF /inline.txt
inline file
EOF
"""})
    build(busybox, ctx, "--add-host", "myhost:10.1.2.3", "-t", "heredoc")
    out = busybox("run", "--rm", "heredoc", "cat", "/h", "/script", "/fromcat", "/exec", "/links", "/hosts",
                  "/inline.txt").stdout
    assert out.splitlines() == ["heredoc-line-1", "heredoc-line-2", "script at /dev/pipes/EOF", "cat-heredoc",
                                "exec", "0", "10.1.2.3\tmyhost", "inline file"]


def test_run_mounts_bind_cache_tmpfs(busybox, tmp_path):
    ctx = write(tmp_path, {"in-context.txt": "ctxfile\n", "Dockerfile": """\
FROM busybox AS src
RUN echo from-stage > /stagefile
FROM busybox
RUN --mount=type=bind,source=in-context.txt,target=/m/ctx.txt --mount=type=bind,from=src,source=/stagefile,target=/m/stage \\
    --mount=type=cache,target=/cache --mount=type=tmpfs,target=/t \\
    cat /m/ctx.txt /m/stage && echo run >> /cache/log && wc -l < /cache/log > /cachecount && touch /t/x
"""})
    p = build(busybox, ctx, "-t", "mounts")
    assert ran(p.stderr, "ctxfile") and ran(p.stderr, "from-stage")
    build(busybox, ctx, "--no-cache", "-t", "mounts")
    out = busybox("run", "--rm", "mounts", "sh", "-c", "cat /cachecount; ls -d /m /cache /t 2>&1 | wc -l").stdout
    assert out.split() == ["2", "3"]  # the cache directory outlives builds; no mount point is left in the image
    assert "/m" not in busybox("run", "--rm", "mounts", "ls", "/").stdout.split()
    # a changed bound file invalidates the step
    write(tmp_path, {"in-context.txt": "changed\n"})
    assert ran(build(busybox, ctx).stderr, "changed")


def test_failing_run_error_and_nothing_tagged(busybox, tmp_path):
    ctx = write(tmp_path, {"Dockerfile": "FROM busybox\nRUN echo before\nRUN echo some output; echo on stderr >&2; false\n"})
    p = build(busybox, ctx, "-t", "failed:1", check=False)
    assert p.returncode == 1
    assert 'ERROR: failed to solve: process "/bin/sh -c echo some output; echo on stderr >&2; false" did not ' \
           "complete successfully: exit code: 1" in p.stderr
    assert " > [3/3] RUN echo some output; echo on stderr >&2; false:" in p.stderr
    assert "some output\non stderr\n" in p.stderr  # the tail of the step's output
    assert "Dockerfile:3" in p.stderr and "   3 | >>> RUN echo some output" in p.stderr
    assert busybox("images", "-q", "failed").stdout == ""
    assert busybox("ps", "-aq").stdout == ""  # the step's container is gone


def test_bad_input_in_dockers_words(busybox, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    p = busybox("build", str(empty), check=False)
    assert p.returncode == 1
    assert p.stderr.strip().endswith("ERROR: failed to solve: failed to read dockerfile: open Dockerfile: "
                                     "no such file or directory")
    p = busybox("build", str(tmp_path / "nope"), check=False)
    assert p.returncode == 1 and 'unable to prepare context: path "' in p.stderr
    write(empty, {"Dockerfile": "FROM busybox\nFOO bar\n"})
    p = busybox("build", str(empty), check=False)
    assert p.returncode == 1
    assert "ERROR: failed to solve: dockerfile parse error on line 2: unknown instruction: FOO" in p.stderr
    assert "   2 | >>> FOO bar" in p.stderr
    write(empty, {"Dockerfile": "FROM busybox\nCOPY /nope /x\n"})
    p = busybox("build", str(empty), check=False)
    assert p.returncode == 1 and '"/nope": not found' in p.stderr
    write(empty, {"Dockerfile": "FROM busybox AS one\nRUN true\n"})
    p = busybox("build", "--target", "two", str(empty), check=False)
    assert p.returncode == 1 and 'target stage "two" could not be found' in p.stderr
    p = busybox("build", "-t", "Bad:Tag", str(empty), check=False)
    assert p.returncode == 1 and 'invalid tag "Bad:Tag"' in p.stderr and "must be lowercase" in p.stderr
    write(empty, {"Dockerfile": "FROM busybox:no-such-tag-here\n"})
    p = busybox("build", str(empty), check=False)
    assert p.returncode == 1 and "busybox:no-such-tag-here" in p.stderr
    assert busybox("images", "--format", "{{.Repository}}").stdout.split() == ["busybox"]


def test_quiet_iidfile_labels(busybox, tmp_path):
    ctx = write(tmp_path, {"Dockerfile": "FROM busybox\nRUN echo quiet-output\n"})
    iid = tmp_path / "iid"
    p = busybox("build", "-q", "--iidfile", str(iid), "--label", "team=core", "-t", "q:1", "-t", "q:2", str(ctx))
    image = p.stdout.strip()
    assert image.startswith("sha256:") and len(image) == 71 and p.stderr == ""
    assert iid.read_text() == image
    assert inspect(busybox, "q:1")["Id"] == image == inspect(busybox, "q:2")["Id"]
    assert inspect(busybox, "q:1")["Config"]["Labels"]["team"] == "core"
    p = busybox("image", "build", "--progress", "quiet", "--label", "team=core", str(ctx))
    assert p.stdout.strip() == image


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_add_archives_and_urls(busybox, tmp_path):
    web = tmp_path / "web"
    web.mkdir()
    (web / "remote.txt").write_text("downloaded\n")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _Files(*a, directory=str(web)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        import hashlib

        digest = hashlib.sha256(b"downloaded\n").hexdigest()
        ctx = tmp_path / "ctx"
        ctx.mkdir()
        for name, mode in (("plain.tar", "w"), ("gz.tar.gz", "w:gz"), ("bz.tbz", "w:bz2"), ("xz.txz", "w:xz")):
            with tarfile.open(ctx / name, mode) as tf:
                data = f"inside {name}\n".encode()
                info = tarfile.TarInfo(f"pkg/{name}.txt")
                info.size, info.uid, info.gid = len(data), 1000, 1000
                tf.addfile(info, io.BytesIO(data))
        write(ctx, {"Dockerfile": f"""\
FROM busybox
ADD plain.tar gz.tar.gz bz.tbz xz.txz /unpacked/
ADD --checksum=sha256:{digest} http://127.0.0.1:{port}/remote.txt /downloads/
ADD http://127.0.0.1:{port}/remote.txt /named.txt
COPY gz.tar.gz /copied/
RUN find /unpacked /downloads /named.txt /copied -type f -exec ls -ln {{}} + | awk '{{print $1, $3, $9}}' | sort
"""})
        p = build(busybox, ctx, "-t", "adds")
        lines = [l.split(" ", 2)[2] for l in p.stderr.splitlines() if "/unpacked/" in l or "/downloads" in l
                 or "/named" in l or "/copied" in l]
        assert "-rw-r--r-- 1000 /unpacked/pkg/plain.tar.txt" in lines
        assert "-rw-r--r-- 1000 /unpacked/pkg/xz.txz.txt" in lines and "-rw-r--r-- 1000 /unpacked/pkg/bz.tbz.txt" in lines
        assert "-rw------- 0 /downloads/remote.txt" in lines and "-rw------- 0 /named.txt" in lines
        assert "-rw-r--r-- 0 /copied/gz.tar.gz" in lines  # COPY never extracts
        # a wrong checksum fails the build
        (ctx / "Dockerfile").write_text(f"FROM busybox\nADD --checksum=sha256:{'0' * 64} "
                                        f"http://127.0.0.1:{port}/remote.txt /x\n")
        p = build(busybox, ctx, check=False)
        assert p.returncode == 1 and "digest mismatch" in p.stderr
    finally:
        server.shutdown()
        server.server_close()


def _get(url: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                return resp.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@pytest.mark.slow
def test_flask_example_builds_runs_and_answers(dockyard):
    dockyard("load", "-i", str(cached_image_archive("python:3.11-slim")))
    app = REPO / "examples" / "flask-app"
    p = build(dockyard, app, "-t", "flask-app")
    assert "Successfully installed" in p.stderr and "flask" in p.stderr.lower()
    history = [h["created_by"] for h in config(dockyard, "flask-app")["history"]][-6:]
    assert history == ["WORKDIR /app", "COPY . /app # buildkit",
                       "RUN /bin/sh -c pip install --no-cache-dir -r requirements.txt # buildkit",
                       "EXPOSE map[5000/tcp:{}]", "ENV NAME=World", 'CMD ["python" "app.py"]']
    # only what .dockerignore lets through was copied
    listing = dockyard("run", "--rm", "flask-app", "ls", "-a", "/app").stdout.split()
    assert listing == [".", "..", "app.py", "requirements.txt"]
    cid = dockyard("run", "-d", "-p", "5000:5000", "flask-app").stdout.strip()
    try:
        answer = _get("http://127.0.0.1:5000/")
        assert answer.startswith("Hello World!")
    finally:
        dockyard("rm", "-f", cid)
    # a rebuild with nothing changed runs nothing
    again = build(dockyard, app, "-t", "flask-app")
    assert again.stderr.count("CACHED") == 3 and "Collecting" not in again.stderr
    # the multi-stage variant is smaller and answers too
    build(dockyard, app, "-f", str(app / "Dockerfile.multistage"), "-t", "flask-app:slim")
    sizes = {i["RepoTags"][0]: i["Size"] for i in (inspect(dockyard, "flask-app"), inspect(dockyard, "flask-app:slim"))}
    assert sizes["flask-app:slim"] < sizes["flask-app:latest"] / 2
    cid = dockyard("run", "-d", "-p", "5001:5000", "flask-app:slim").stdout.strip()
    try:
        assert _get("http://127.0.0.1:5001/").startswith("Hello World!")
    finally:
        dockyard("rm", "-f", cid)
