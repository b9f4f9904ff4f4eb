"""The classic Python web app of Docker's getting-started guide: Flask answers "Hello World!"."""

import os
import socket

from flask import Flask

app = Flask(__name__)


@app.route("/")
def hello() -> str:
    name = os.getenv("NAME", "world")
    return f"Hello {name}!\nI am {socket.gethostname()}.\n"


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
