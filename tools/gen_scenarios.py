"""Writes the built-in scenarios (agent/sim/scenarios/*.yaml) from compact descriptions.

The YAML files are the reviewable data; run this only to regenerate them:
    .venv/bin/python tools/gen_scenarios.py
"""

import os

import yaml

OUT = os.path.join(os.path.dirname(__file__), "..", "agent", "sim", "scenarios")


def sine(mean, amp, period, phase=0):
    return {"sine": {"mean": round(mean, 3), "amplitude": round(amp, 3), "period": f"{period}s", "phase": f"{phase}s"}}


def pulse(low, high, period, duty, phase=0):
    return {"pulse": {"low": low, "high": high, "period": f"{period}s", "duty": duty, "phase": f"{phase}s"}}


# vLLM releases the reference node mixes: V0 (gpu_cache_usage_perc, no engine label), early
# V1 (engine label) and current (kv_cache_usage_perc); "" is the simulator's current format.
VLLM_VERSIONS = ("0.6.3", "0.9.2", "", "")


def vllm(model, i):
    version = VLLM_VERSIONS[i % len(VLLM_VERSIONS)]
    return {"server": "vllm", "model": model, **({"version": version} if version else {}),
            "queue_depth": sine(6 + (i % 5) * 3, 4 + i % 3, 60 + 7 * i, i),
            "running_requests": sine(12 + i % 7, 3, 45 + 5 * i),
            "kv_cache_usage": sine(0.45 + 0.04 * (i % 6), 0.1, 90 + 3 * i)}


def reference():
    pods = []
    for g in range(4):
        for m in range(7):
            i = g * 7 + m
            # The last replica holds its MIG slice with the model loaded and never serves.
            util = 0.0 if i == 27 else sine(0.25 + 0.09 * (i % 8), 0.1, 30 + 5 * m, i)
            pods.append({"namespace": "llm", "name": f"vllm-llama-8b-{i:02d}",
                         "labels": {"app": "vllm-llama-8b"},
                         "containers": [{"name": "vllm", "devices": [{"gpu": g, "mig": m}],
                                         "processes": [{"memory_mib": 7000 + 250 * (i % 9),
                                                        "utilization": util}]}],
                         "workload": vllm("meta-llama/Llama-3.1-8B-Instruct", i)})
    for g in range(4, 8):
        for r in range(9):
            i = (g - 4) * 9 + r
            ns = ("research", "batch", "serving")[r % 3]
            name = {"research": f"notebook-{i:02d}", "batch": f"embed-job-{i:02d}", "serving": f"vllm-qwen-{i:02d}"}[ns]
            # The first notebook on each GPU sits idle on its share; embedding jobs run in bursts.
            util = (0.0 if r == 0 else pulse(0.0, 0.3, 20 + 5 * r, 0.25, g) if ns == "batch"
                    else sine(0.02 + 0.012 * r + 0.005 * (g - 4), 0.01, 20 + 3 * r, r))
            pod = {"namespace": ns, "name": name,
                   "containers": [{"name": "main", "devices": [{"gpu": g, "replica": r}],
                                   "processes": [{"memory_mib": 2000 + 600 * r, "utilization": util}]}]}
            if ns == "serving":
                pod["labels"] = {"app": "vllm-qwen"}
                pod["workload"] = vllm("Qwen/Qwen2.5-1.5B-Instruct", i)
            pods.append(pod)
    return {
        "name": "reference",
        "description": "DESIGN reference node: 8 x H100 80GB HBM3 on AWS p5.48xlarge; GPUs 0-3 in MIG with 7 x 1g.10gb each (28 vLLM pods, the last holding its slice and never serving), GPUs 4-7 time-sliced with 9 replicas each (36 pods: an idle notebook, bursty embedding jobs and steady servers on each); one host process on GPU 4 that belongs to no pod.",
        "node": {"name": "ip-10-0-12-34.ec2.internal",
                 "provider_id": "aws:///us-east-1a/i-0abc1234def567890",
                 "dmi": {"sys_vendor": "Amazon EC2", "product_name": "p5.48xlarge", "board_asset_tag": "i-0abc1234def567890"},
                 "labels": {"node.kubernetes.io/instance-type": "p5.48xlarge",
                            "topology.kubernetes.io/region": "us-east-1", "topology.kubernetes.io/zone": "us-east-1a",
                            "karpenter.k8s.aws/instance-gpu-name": "h100", "karpenter.k8s.aws/instance-gpu-count": "8",
                            "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}},
        "driver": {"version": "550.90.07", "cuda_version": 12040, "nvml_version": "12.550.90.07"},
        "cgroup": {"version": 2, "driver": "systemd", "runtime": "containerd"},
        "gpus": [{"model": "H100-SXM5-80GB", "count": 4, "mig": {"instances": [{"profile": "1g.10gb", "count": 7}]}},
                 {"model": "H100-SXM5-80GB", "count": 4, "sharing": {"mode": "time-slicing", "replicas": 9}}],
        "pods": pods,
        "host_processes": [{"pid": 4242, "gpu": 4, "memory_mib": 512, "utilization": 0.03}],
    }


def g5_timeslice():
    servers = [("tgi", "mistralai/Mistral-7B-Instruct-v0.3"), ("triton", "ensemble"), ("vllm", "meta-llama/Llama-3.2-3B-Instruct"), ("trtllm", "llama3-8b-trtllm")]
    pods = []
    for g in range(4):
        for r in range(4):
            i = g * 4 + r
            server, model = servers[r]
            # one old release per server kind on GPU 0: Triton+TensorRT-LLM before v0.18 has no
            # waiting row (no queue) and no KV fraction (used / max blocks)
            version = {"vllm": "0.6.3", "trtllm": "0.15.0"}.get(server, "") if g == 0 else ""
            pods.append({"namespace": "inference", "name": f"{server}-{i:02d}", "labels": {"app": server},
                         "containers": [{"name": "server", "devices": [{"gpu": g, "replica": r}],
                                         "processes": [{"memory_mib": 4000 + 300 * r,
                                                        "utilization": sine(0.08 + 0.04 * r, 0.03, 40 + 4 * i, i)}]}],
                         "workload": {"server": server, "model": model, **({"version": version} if version else {}),
                                      "queue_depth": sine(4 + r * 2, 3, 50 + i, i),
                                      "running_requests": sine(6 + r, 2, 30 + i),
                                      **({"kv_cache_usage": sine(0.5, 0.2, 70)} if server in ("tgi", "vllm", "trtllm") else {})}})
    return {
        "name": "g5-timeslice",
        "description": "AWS g5.12xlarge: 4 x A10G, each time-sliced into 4 replicas; TGI, Triton, vLLM and Triton+TensorRT-LLM pods side by side.",
        "node": {"name": "ip-10-0-40-7.us-west-2.compute.internal", "provider_id": "aws:///us-west-2b/i-0fedcba9876543210",
                 "dmi": {"sys_vendor": "Amazon EC2", "product_name": "g5.12xlarge"},
                 "labels": {"node.kubernetes.io/instance-type": "g5.12xlarge", "topology.kubernetes.io/region": "us-west-2",
                            "topology.kubernetes.io/zone": "us-west-2b", "karpenter.k8s.aws/instance-gpu-name": "a10g",
                            "nvidia.com/gpu.product": "NVIDIA-A10G-SHARED"}},
        "driver": {"version": "535.183.01", "cuda_version": 12020, "nvml_version": "12.535.183.01"},
        "cgroup": {"version": 2, "driver": "systemd", "runtime": "containerd"},
        "gpus": [{"model": "A10G", "count": 4, "sharing": {"mode": "time-slicing", "replicas": 4}}],
        "pods": pods,
    }


def a100_mig_mixed():
    layouts = [[("1g.10gb", 7)]] * 2 + [[("2g.20gb", 3), ("1g.10gb", 1)]] * 2 + [[("3g.40gb", 2)]] * 2 + [[("7g.80gb", 1)]]
    gpus = [{"model": "A100-SXM4-80GB", "mig": {"instances": [{"profile": p, "count": n} for p, n in lay]}} for lay in layouts]
    gpus.append({"model": "A100-SXM4-80GB"})
    pods = []
    sizes = {"1g.10gb": 1, "2g.20gb": 2, "3g.40gb": 3, "7g.80gb": 7}
    for g, lay in enumerate(layouts):
        m = 0
        for prof, n in lay:
            for _ in range(n):
                i = len(pods)
                pods.append({"namespace": "ml", "name": f"train-{prof.replace('.', '-')}-{i:02d}",
                             "containers": [{"name": "trainer", "devices": [{"gpu": g, "mig": m}],
                                             "processes": [{"memory_mib": 1000 * sizes[prof] * 1.2,
                                                            "utilization": sine(0.3 + 0.08 * (i % 7), 0.15, 25 + i, i)}]}]})
                m += 1
    pods.append({"namespace": "ml", "name": "train-full-gpu", "containers": [{"name": "trainer", "devices": [{"gpu": 7}],
                 "processes": [{"memory_mib": 60000, "utilization": sine(0.85, 0.1, 33)}]}]})
    return {
        "name": "a100-mig-mixed",
        "description": "GCP a2-ultragpu-8g: 8 x A100-SXM4-80GB with mixed MIG profiles (7x1g.10gb, 3x2g.20gb+1g.10gb, 2x3g.40gb, 7g.80gb) and one GPU without MIG.",
        "node": {"name": "gke-ml-a2-ultra-pool-3f9c2d1e-x7kq", "provider_id": "gce://ml-prod/us-central1-c/gke-ml-a2-ultra-pool-3f9c2d1e-x7kq",
                 "dmi": {"sys_vendor": "Google", "product_name": "Google Compute Engine"},
                 "labels": {"node.kubernetes.io/instance-type": "a2-ultragpu-8g", "topology.kubernetes.io/region": "us-central1",
                            "topology.kubernetes.io/zone": "us-central1-c", "cloud.google.com/gke-accelerator": "nvidia-a100-80gb",
                            "cloud.google.com/gke-gpu-partition-size": "1g.10gb"}},
        "driver": {"version": "535.183.01", "cuda_version": 12020, "nvml_version": "12.535.183.01"},
        "cgroup": {"version": 2, "driver": "systemd", "runtime": "containerd"},
        "gpus": gpus,
        "pods": pods,
    }


def t4_legacy():
    return {
        "name": "t4-legacy",
        "description": "GKE n1-standard-8 with 2 x Tesla T4 on an older driver: several fields unsupported, cgroup v1 with the cgroupfs driver and Docker.",
        "node": {"name": "gke-legacy-t4-pool-8a7b6c5d-q2w3", "provider_id": "gce://legacy-proj/europe-west4-a/gke-legacy-t4-pool-8a7b6c5d-q2w3",
                 "dmi": {"sys_vendor": "Google", "product_name": "Google Compute Engine"},
                 "labels": {"node.kubernetes.io/instance-type": "n1-standard-8", "topology.kubernetes.io/region": "europe-west4",
                            "topology.kubernetes.io/zone": "europe-west4-a", "cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}},
        "driver": {"version": "470.256.02", "cuda_version": 11040, "nvml_version": "11.470.256.02"},
        "cgroup": {"version": 1, "driver": "cgroupfs", "runtime": "docker"},
        "gpus": [{"model": "T4", "count": 2}],
        "pods": [{"namespace": "vision", "name": "resnet-server-0", "containers": [{"name": "server", "devices": [{"gpu": 0}],
                  "processes": [{"memory_mib": 3000, "utilization": sine(0.4, 0.2, 40)}]}],
                  "workload": {"server": "triton", "model": "resnet50", "queue_depth": sine(3, 2, 30), "running_requests": 2}},
                 {"namespace": "vision", "name": "batch-ocr-0", "qos": "besteffort", "containers": [{"name": "worker", "devices": [{"gpu": 1}],
                  "processes": [{"memory_mib": 5000, "utilization": 0.7}]}]}],
    }


def dra():
    """Kubernetes 1.36 with NVIDIA's DRA driver (gpu.nvidia.com) beside the device plugin on one
    node: claims hand out whole GPUs, one GPU time-sliced under a claim four pods share,
    static MIG instances, a DRA-served nvidia.com/gpu request and a two-container pod on one
    claim; the device plugin keeps two GPUs."""
    def proc(mem, util):
        return {"memory_mib": mem, "utilization": util}

    pods = []
    for i in range(2):  # whole GPUs from a ResourceClaimTemplate (claim <pod>-<request>-<suffix>)
        pods.append({"namespace": "training", "name": f"train-llama-{i}", "labels": {"app": "train-llama"},
                     "containers": [{"name": "trainer", "devices": [{"gpu": i, "claim": f"train-llama-{i}-gpu-q7x4{'bc'[i]}"}],
                                     "processes": [proc(61000 + 2000 * i, sine(0.82 - 0.1 * i, 0.08, 37 + 6 * i, i))]}]})
    for r in range(4):  # one ResourceClaim, four pods, time-slicing (opaque TimeSlicing config)
        pods.append({"namespace": "inference", "name": f"vllm-small-{r}", "labels": {"app": "vllm-small"},
                     "containers": [{"name": "vllm", "devices": [{"gpu": 2, "claim": "shared-h100"}],
                                     "processes": [proc(12000 + 1500 * r, sine(0.06 + 0.05 * r, 0.03, 30 + 4 * r, r))]}],
                     "workload": vllm("Qwen/Qwen2.5-1.5B-Instruct", r)})
    for m, (name, ns) in enumerate([("jupyter-ana", "notebooks"), ("jupyter-ben", "notebooks"),
                                    ("embed-svc", "inference"), ("eval-job", "research")]):  # static MIG through DRA
        pods.append({"namespace": ns, "name": name,
                     "containers": [{"name": "main", "devices": [{"gpu": 3, "mig": m, "claim": f"{name}-mig"}],
                                     "processes": [proc(5000 + 3000 * (3 - m), sine(0.35 + 0.1 * m, 0.1, 25 + 5 * m, m))]}]})
    # nvidia.com/gpu: 1 served by DRA (DRAExtendedResource): the scheduler's claim holds GPU 4
    pods.append({"namespace": "batch", "name": "legacy-render-0",
                 "containers": [{"name": "render", "devices": [{"gpu": 4, "resource": "nvidia.com/gpu"}],
                                 "processes": [proc(30000, sine(0.6, 0.2, 45))]}]})
    # two containers of one pod on one claim: split per container by their processes
    pods.append({"namespace": "inference", "name": "rag-pipeline-0", "labels": {"app": "rag-pipeline"},
                 "containers": [{"name": "embedder", "devices": [{"gpu": 5, "claim": "rag-pipeline-0-gpu-m2k8d"}],
                                 "processes": [proc(9000, sine(0.3, 0.1, 28))]},
                                {"name": "reranker", "devices": [{"gpu": 5, "claim": "rag-pipeline-0-gpu-m2k8d"}],
                                 "processes": [proc(7000, sine(0.12, 0.05, 41, 3))]}]})
    # the device plugin's GPUs: one whole, one time-sliced in two replicas
    pods.append({"namespace": "batch", "name": "etl-nightly-0",
                 "containers": [{"name": "etl", "devices": [{"gpu": 6}], "processes": [proc(20000, sine(0.5, 0.2, 50))]}]})
    for r, name in enumerate(("notebook-a", "notebook-b")):
        pods.append({"namespace": "notebooks", "name": name,
                     "containers": [{"name": "jupyter", "devices": [{"gpu": 7, "replica": r}],
                                     "processes": [proc(6000 + 2000 * r, sine(0.1 + 0.15 * r, 0.05, 33 + 8 * r, r))]}]})
    return {
        "name": "dra",
        "description": "GKE a3-highgpu-8g on Kubernetes 1.36: 8 x H100 80GB; NVIDIA's DRA driver (gpu.nvidia.com) hands out GPUs 0-5 through claims (two whole GPUs, one claim shared by four vLLM pods with time-slicing, four static MIG instances, a DRA-served nvidia.com/gpu request, a two-container pod on one claim); the device plugin keeps GPUs 6-7 (one whole, one time-sliced); a host process on the shared GPU.",
        "node": {"name": "gke-ml-a3-dra-pool-5c1e7a2b-h9zt", "provider_id": "gce://ml-prod/us-east5-a/gke-ml-a3-dra-pool-5c1e7a2b-h9zt",
                 "dmi": {"sys_vendor": "Google", "product_name": "Google Compute Engine"},
                 "labels": {"node.kubernetes.io/instance-type": "a3-highgpu-8g", "topology.kubernetes.io/region": "us-east5",
                            "topology.kubernetes.io/zone": "us-east5-a", "cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}},
        "driver": {"version": "570.133.20", "cuda_version": 12080, "nvml_version": "12.570.133.20"},
        "cgroup": {"version": 2, "driver": "systemd", "runtime": "containerd"},
        "gpus": [{"model": "H100-SXM5-80GB", "count": 2, "dra": {"driver": "gpu.nvidia.com"}},
                 {"model": "H100-SXM5-80GB", "dra": {"driver": "gpu.nvidia.com"}, "sharing": {"mode": "time-slicing"}},
                 {"model": "H100-SXM5-80GB", "dra": {"driver": "gpu.nvidia.com"},
                  "mig": {"instances": [{"profile": "3g.40gb"}, {"profile": "2g.20gb"}, {"profile": "1g.10gb", "count": 2}]}},
                 {"model": "H100-SXM5-80GB", "dra": {"driver": "gpu.nvidia.com"}},
                 {"model": "H100-SXM5-80GB", "dra": {"driver": "gpu.nvidia.com"}, "sharing": {"mode": "time-slicing"}},
                 {"model": "H100-SXM5-80GB"},
                 {"model": "H100-SXM5-80GB", "sharing": {"mode": "time-slicing", "replicas": 2}}],
        "pods": pods,
        "host_processes": [{"pid": 5151, "gpu": 2, "memory_mib": 768, "utilization": 0.04}],
    }


for scen in (reference(), g5_timeslice(), a100_mig_mixed(), t4_legacy(), dra()):
    path = os.path.join(OUT, scen["name"] + ".yaml")
    with open(path, "w") as fh:
        fh.write("# Built-in scenario; generated by tools/gen_scenarios.py. Edit there and regenerate.\n")
        yaml.safe_dump(scen, fh, sort_keys=False, width=120)
    print(path)
