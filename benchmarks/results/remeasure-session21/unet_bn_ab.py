import torch, sys, time, statistics
sys.path.insert(0, "/work/main/benchmarks")
from bench import _aekit_model, get_case
from aekit.data import DataConfig, load_data, to_float
from aekit.data.batch import Batch
torch.set_flush_denormal(True)
case = get_case("unet")
data = load_data(DataConfig(case.data, val_fraction=0.0, **case.data_options))
def build(variant):
    torch.manual_seed(0)
    m = _aekit_model(case, data)
    if variant != "nchw":
        m = m.to(memory_format=torch.channels_last)
    if variant.startswith("bnfix"):
        lim = int(variant[5:])
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d) and mod.num_features <= lim:
                mod.register_forward_pre_hook(lambda mod, a: (a[0].contiguous(),))
                mod.register_forward_hook(lambda mod, a, o: o.contiguous(memory_format=torch.channels_last))
    opt = torch.optim.Adam(m.parameters(), lr=case.lr, fused=True)
    cl = variant != "nchw"
    def step(idx):
        x = to_float(data.train.x.index_select(0, idx))
        if cl: x = x.contiguous(memory_format=torch.channels_last)
        l = m.loss(Batch(x, labels=data.train.y.index_select(0, idx)))
        opt.zero_grad(set_to_none=True); l.total.backward(); opt.step()
        return l.total.item()
    return step
variants = sys.argv[1].split(",")
steps = {v: build(v) for v in variants}
n=len(data.train); perm=torch.randperm(n); b=16
batches=[perm[s:s+b] for s in range(0,n-b+1,b)]
losses = {v: [steps[v](i) for i in batches[:5]] for v in variants}
print({v: [round(x,4) for x in losses[v]] for v in variants})
import collections
ts=collections.defaultdict(list)
R=int(sys.argv[2]) if len(sys.argv)>2 else 3
for r in range(R):
    for i in batches:
        for v in (variants if r%2==0 else variants[::-1]):
            t=time.perf_counter(); steps[v](i); ts[v].append(time.perf_counter()-t)
for v in variants:
    med=statistics.median(ts[v]); q=statistics.quantiles(ts[v],n=4)
    print(f"{v:12s} median {med*1e3:7.1f} ms/step (IQR {q[0]*1e3:.0f}-{q[2]*1e3:.0f}) {16/med:6.1f} samples/s")
