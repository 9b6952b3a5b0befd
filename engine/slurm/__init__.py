"""Slurm contexts: containers that run on a cluster's nodes, with GPUs allocated by Slurm.

portside schedules nothing itself. In a Slurm context it asks Slurm for a node and GPUs and runs
the container there with the node's own portside, the way pyxis+enroot do for ``srun
--container-image``, while the fronts (terminal, notebook, side panel) keep speaking the same
model API as on a workstation. The pieces, client side first:

``options``   the context's settings: ``partition=gpu,time=4:00:00[,account=A][,registry=H:P]
              [,root=DIR][,conf=SLURM_CONF]`` (``root`` may hold ``%n``: one store per node)
``cluster``   Slurm's client commands (``sbatch``, ``squeue``, ``scontrol``, ``scancel``,
              ``srun``) with their output parsed and their errors turned into one line
``records``   what the client remembers of each container (its job, node, GPUs, last state),
              so a container whose job has vanished is still listed, as exited
``engine``    :class:`~.engine.SlurmEngine`: ``containers`` answering the model API; every verb
              on a running container is ``srun --overlap --jobid J -w NODE -u portside …``
``ship``      makes an image present on the node: pulled from the context's registry when it
              names one, else ``portside save | srun … portside load``, skipped when the node
              already has it

and on the node:

``keeper``    the batch job's script: waits for the image, creates and starts the container
              with the GPUs Slurm allocated, holds the job for the container's life, and stops
              and removes the container when the job is cancelled or times out (SIGTERM)
``gpus``      Slurm's GPU indices (``SLURM_JOB_GPUS``/``SLURM_STEP_GPUS``, never
              ``CUDA_VISIBLE_DEVICES``) → the node's device files (``slurmd -G``) → the ids
              ``--gpus device=`` takes on that node
``node``      the small JSON commands the client runs over ``srun`` (``prepare``, ``top``…)
``epilog``    ``portside slurm epilog``, for a site's ``Epilog=``: removes the containers a
              killed keeper left behind

Why a keeper: runc's containers live in cgroups Slurm does not track, so ``scancel`` alone leaves
them running; the keeper, being the job's own process, gets Slurm's SIGTERM and cleans up, and
the epilog covers a keeper that was killed outright.
"""
