"""The remote engine: the model API of an engine that runs in another process.

Two uses, one mechanism:

* rootless, a threaded process (a Jupyter kernel, the server extension) cannot join the user's
  namespace (the kernel refuses ``setns`` into a user namespace to a process with threads), so
  it starts an engine process that joins it at its start and talks to it
  (:func:`portside.engine.rootless.proxy.engine`);
* a Slurm context talks to the portside of a compute node over the pipes of ``srun``.

Layers: :mod:`.wire` frames messages (and carries descriptors over unix sockets);
:mod:`.codec` turns values into JSON and back; :mod:`.server` serves an engine object;
:mod:`.client` stands in for one (``RemoteEngine``), with the model classes' own properties and
its verbs forwarded by name. The fronts see the same API either way.
"""
