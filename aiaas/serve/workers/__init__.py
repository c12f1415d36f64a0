"""`aiaas serve --workers N`: front-end processes beside one engine process.

The front ends parse and encode requests; the engine holds the models, the batchers
and ONNX Runtime. They meet over the hop (``hop``), and a front end's infer paths see
the engine through ``remote.RemoteDataPlane``.
"""
