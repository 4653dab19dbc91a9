#!/usr/bin/env python3
"""One backend for the integration harness, run inside its own network namespace.

Serves, on every address of the namespace (IPv4 and IPv6):
  - HTTP on --http-port: any path answers "<name> <client address>\n" (HTTP/1.1, keep-alive), so a test
    knows which backend a connection reached and what source address the backend saw;
  - HTTPS on --https-port (when --cert/--key are given), the same, plus /readyz like kube-apiserver:
    200 "ok" while the file --not-ready does not exist, 503 while it does;
  - UDP echo on --udp-port: each datagram is answered with "<name> <client address>\n";
  - TCP echo on --echo-port (when given): every byte received is sent back, for as long as the client
    keeps the connection open (the HA tests' long-lived connections).
Writes --ready-file once every socket is listening. Standard library only.
"""
import argparse
import os
import signal
import socket
import socketserver
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def client_address(addr):
    host = addr[0]
    return host[7:] if host.startswith("::ffff:") else host


class DualStackServer(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True
    request_queue_size = 1024

    def handle_error(self, request, client_address):
        # Health probes end with a reset (SO_LINGER 0): not worth a traceback in the test log.
        if not isinstance(sys.exc_info()[1], ConnectionResetError):
            super().handle_error(request, client_address)

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def handler_for(name, not_ready):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            if self.path == "/readyz" and not_ready and os.path.exists(not_ready):
                status, body = 503, b"not ready\n"
            elif self.path == "/readyz":
                status, body = 200, b"ok\n"
            else:
                status, body = 200, f"{name} {client_address(self.client_address)}\n".encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return Handler


def serve_udp(name, port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))

    def loop():
        while True:
            _, addr = s.recvfrom(2048)
            s.sendto(f"{name} {client_address(addr)}\n".encode(), addr)

    threading.Thread(target=loop, daemon=True).start()


class EchoHandler(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        try:
            while True:
                data = sock.recv(4096)
                if not data:
                    return
                sock.sendall(data)
        except OSError:
            # A reset (health probes close with SO_LINGER 0, a client gives up): nothing to report.
            return


class EchoServer(socketserver.ThreadingTCPServer):
    address_family = socket.AF_INET6
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def main():
    # A Swift test runner's threads block most signals, and a spawned child inherits that mask: unblock
    # the ones the harness uses to stop us.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    p = argparse.ArgumentParser()
    p.add_argument("--name", required=True)
    p.add_argument("--http-port", type=int, default=80)
    p.add_argument("--https-port", type=int, default=443)
    p.add_argument("--udp-port", type=int, default=53)
    p.add_argument("--echo-port", type=int, default=0, help="TCP echo on this port (0: none)")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--not-ready")
    p.add_argument("--ready-file", required=True)
    a = p.parse_args()

    handler = handler_for(a.name, a.not_ready)
    servers = [DualStackServer(("::", a.http_port), handler)]
    if a.cert and a.key:
        tls = DualStackServer(("::", a.https_port), handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.cert, a.key)
        tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
        servers.append(tls)
    serve_udp(a.name, a.udp_port)
    if a.echo_port:
        echo = EchoServer(("::", a.echo_port), EchoHandler)
        threading.Thread(target=echo.serve_forever, daemon=True).start()
    for s in servers[1:]:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    with open(a.ready_file, "w") as f:
        f.write("ready\n")
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
