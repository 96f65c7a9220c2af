"""The offline simulator: replay traffic through KEDA, the HPA, pods and a queue.

Each policy's replica decisions come from the same code a cluster would run
(the tidescaler engine, or the HPA and KEDA rules modelled in `hpa` and
`cluster`), and `queue` turns ready capacity into what users feel.
"""
