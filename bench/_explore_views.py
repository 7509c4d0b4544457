import sys, time, torch, numpy as np
from pathlib import Path
sys.path.insert(0, '../shared/standin')
from squeezenet_places import StandinPlaces365
from protector.generator import BoundedProtector, NoGenerator
from protector.protect.predictor import ProtectPredictor
from protector.views import ViewSampler, EVALUATION_VIEWS
from protector.images import read_photo, to_tensor, to_uint8, encode_photo
from protector.evaluation.views import score_views
torch.set_num_threads(1)
m = StandinPlaces365().eval()
names = sorted(Path('../shared/fullsize').glob('*.jpg'))
which = sys.argv[1]; K=int(sys.argv[2]); vps=int(sys.argv[3]); ws = None if sys.argv[4]=='none' else int(sys.argv[4]); n=int(sys.argv[5])
views = None if sys.argv[6]=='asis' else ViewSampler()
names = names[:50][:n] if which=='tune' else names[50:][:n]
p = BoundedProtector(NoGenerator(), 2/255)
pred = ProtectPredictor(p, m, refine_steps=K, refine_quality=90, views=views, views_per_step=vps, working_side=ws)
orig, prot = [], []
t0=time.perf_counter()
for f in names:
    px = read_photo(f).pixels
    x = to_tensor(px)[None]
    out = pred.predict_step({"image": x, "write": [True]}, 0)
    data = encode_photo(to_uint8(out["x_adv"][0]), "jpeg", 90)
    import io
    from PIL import Image
    back = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    orig.append(px); prot.append(back)
sec=(time.perf_counter()-t0)/len(names)
scores = score_views(m, orig, prot, EVALUATION_VIEWS, torch.device('cpu'))
print(f"K={K} vps={vps} ws={ws} views={sys.argv[6]} n={len(names)} {sec:.2f}s/img")
print(" | ".join(f"{s.view}:{s.top1_changed*100:.0f}/{s.top5_changed*100:.0f} (c{s.control_top1_changed*100:.0f})" for s in scores))
