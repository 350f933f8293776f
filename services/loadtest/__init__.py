"""`meridian loadtest`: HTTP and UDP announce and scrape load against a tracker on loopback.

Like aquatic's `*_load_test` crates, it speaks through the tracker's own protocol codecs
(`services.core.http` and `services.core.udp`): every request is built and every answer decoded
and validated by the same code the server uses, so the two can never disagree about the wire.

Modules, one job each:
  target    what to load (URL, protocol) and the loopback-only rule
  workload  the request stream: Zipf-popular torrents, peers that start, update, complete, stop
  pacing    when the next request may go: count and time bounds, window, fixed rate
  record    latencies and errors, the summary, the table and the JSON
  udp_load  the BEP 15 driver;  http_load  the HTTP driver (keep-alive on or off)
  runner    one run in this process, or across worker processes, with the progress bar
  responder a trivial tracker with fixed valid answers, to measure the generator's own ceiling
  cli       the `loadtest` subcommand
"""
