"""`newsletter studio`: write, check, preview, approve and send an issue from a browser.

A web app over the same library as the command line: it checks with
`review.validate`, renders with `web.preview`, approves with
`review.approval`, sends test copies with `delivery.proofs` and sends with
`newsletter send` itself, in a background process. It runs on the same WSGI
stack as `newsletter serve` (werkzeug + waitress), on 127.0.0.1 only.
"""
