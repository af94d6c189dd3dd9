"""Ray clusters: `ray up` configs and KubeRay manifests (``configs/``), the cluster launcher
wrapper (``launcher``) and job submission through the Ray Jobs API (``jobs``)."""
