"""The slider studio: a browser app to apply, compose and compare sliders on one loaded model.

Layout: `paths` (typed paths stay inside the folders the studio was started with), `cards` (what the
page shows of a slider file), `session` (one browser tab's sliders and settings), `job` (one request:
generate, compare or edit), `command` (the `concept-transfer apply` line that reproduces a result),
`engine` (the model loaded once, cached prompt embeddings and composition, queued and cancellable
runs), `results` (PNG files with apply's metadata), `library` (galleries of slider folders), `handlers`
(what each control does, as plain functions), `app` (the Gradio page) and `server` (offline launch on
127.0.0.1).
"""
