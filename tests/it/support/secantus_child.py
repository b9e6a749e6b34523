"""Runs a SecantusDB server for the tests and stops it when our stdin closes.

The test binary holds the write end of our stdin for its whole life; when it exits (even when
killed), the pipe closes, we see EOF and stop the server, so no server outlives a test run.
"""
import subprocess
import sys

server = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL)
try:
    sys.stdin.buffer.read()
finally:
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
