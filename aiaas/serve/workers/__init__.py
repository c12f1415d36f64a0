"""`aiaas serve --workers N`: front-end processes beside an engine process, which runs
each model in a process of its own.

The front ends parse and encode requests; the engine holds the repository and all
that is known of the models, and starts a model engine process (``model_engine``) for
each model it loads (``model_hosts``). They meet over the hop (``hop``), and a front end's
infer paths see the engine and the models' processes through
``remote.RemoteDataPlane``.
"""
