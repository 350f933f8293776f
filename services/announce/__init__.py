"""The announce node: FastAPI HTTP routes and a BEP 15 UDP server over one `Tracker`.

`app.create_app` is the factory; `server` binds sockets and runs it; `tracker` holds the
protocol-neutral policy; `udp` the datagram frontend; `client_ip` proxy-aware addressing.
"""
