#!/usr/bin/env python3
"""AV1 encoders (libaom, rav1e, SVT-AV1 through Debian's avifenc) against WebP (cwebp -m 2, the
method imgedge uses) on the corpus photos: bytes at equal SSIMULACRA2 (60-80, log-bytes
interpolated as in a BD-rate; below 1 = smaller than WebP) and encode time, one thread each.
Issue 16's groundwork: which AV1 encoder, speed and subsampling is worth wiring in.
  python benches/av1-encoders.py run  > rows.log   # needs avifenc, avifdec (libavif-bin), cwebp,
                                                   # dwebp (webp) and a venv with ssimulacra2,
                                                   # pillow, numpy (benches/../shared/bench/quality.sh's)
  python benches/av1-encoders.py report rows.log
Env: CORPUS (default ../shared/corpus/), WIDTHS ("1200 400"), ENCS (a subset of the encoder names).
"""
import sys


def run():
    import os, subprocess, sys, time, tempfile, math, json
    import numpy as np
    from PIL import Image
    from ssimulacra2 import compute_ssimulacra2
    C=os.environ.get('CORPUS', os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'corpus'))+'/'
    photos=['seeding_4k_3840x2160.jpg','sunset_4272x2848.jpg','storm_1920x1280.jpg','meadow_1280x1024.jpg','aitzgorri_3088x2056.webp']
    widths=[int(w) for w in os.environ.get('WIDTHS','1200 400').split()]
    D=tempfile.mkdtemp(prefix='av1-encoders-'); os.makedirs(D,exist_ok=True)
    def enc_webp(ref,q,out): return ['cwebp','-quiet','-q',str(q),'-m','2',ref,'-o',out]
    def enc_avif(codec,speed,yuv,extra=()):
        def f(ref,q,out): return ['avifenc','-j','1','-c',codec,'-s',str(speed),'-y',yuv,'--min',str(q),'--max',str(q),*extra,ref,out]
        return f
    def dec(path):
        png=path+'.png'
        if path.endswith('.avif'): subprocess.run(['avifdec','-j','1',path,png],check=True,capture_output=True)
        else: subprocess.run(['dwebp','-quiet',path,'-o',png],check=True)
        return png
    encs={'webp_m2':(enc_webp,[30,45,60,75,85,92],'webp'),
     'aom_s6_444':(enc_avif('aom',6,'444'),[44,38,32,26,20,14],'avif'),
     'aom_s6_420':(enc_avif('aom',6,'420'),[44,38,32,26,20,14],'avif'),
     'aom_s8_420':(enc_avif('aom',8,'420'),[44,38,32,26,20,14],'avif'),
     'aom_s9_420':(enc_avif('aom',9,'420'),[44,38,32,26,20,14],'avif'),
     'rav1e_s10_444':(enc_avif('rav1e',10,'444'),[44,38,32,26,20,14],'avif'),
     'rav1e_s6_420':(enc_avif('rav1e',6,'420'),[44,38,32,26,20,14],'avif'),
     'svt_s10_420':(enc_avif('svt',10,'420'),[44,38,32,26,20,14],'avif'),
     'svt_s8_420':(enc_avif('svt',8,'420'),[44,38,32,26,20,14],'avif'),
    }
    only=os.environ.get('ENCS'); 
    if only: encs={k:v for k,v in encs.items() if k in only.split()}
    rows=[]
    for p in photos:
        im=Image.open(C+p).convert('RGB')
        for w in widths:
            h=round(im.height*w/im.width); ref=f'{D}/{p}_{w}.png'
            if not os.path.exists(ref): im.resize((w,h),Image.LANCZOS).save(ref)
            for name,(f,qs,ext) in encs.items():
                for q in qs:
                    out=f'{D}/{p}_{w}_{name}_{q}.{ext}'
                    t=time.perf_counter(); r=subprocess.run(f(ref,q,out),capture_output=True); dt=time.perf_counter()-t
                    if r.returncode!=0: print('FAIL',name,p,w,q,flush=True); break
                    s=compute_ssimulacra2(ref,dec(out))
                    rows.append(dict(photo=p,w=w,enc=name,q=q,bytes=os.path.getsize(out),score=s,secs=dt))
                    print(json.dumps(rows[-1]),flush=True)


def report():
    import json, sys, math, collections
    import numpy as np
    rows=[json.loads(l) for l in open(sys.argv[2]) if l.startswith('{')]
    by=collections.defaultdict(list)
    for r in rows: by[(r['photo'],r['w'],r['enc'])].append(r)
    def curve(rs):
        rs=sorted(rs,key=lambda r:r['score']); return np.array([r['score'] for r in rs]),np.log([r['bytes'] for r in rs])
    def ratio(a,b,lo=60,hi=80):
        sa,ba=curve(a); sb,bb=curve(b)
        l=max(lo,sa.min(),sb.min()); h=min(hi,sa.max(),sb.max())
        if h<=l: return None
        xs=np.linspace(l,h,50)
        return math.exp(np.mean(np.interp(xs,sa,ba)-np.interp(xs,sb,bb)))
    encs=sorted({k[2] for k in by}); keys=sorted({(k[0],k[1]) for k in by})
    print('bytes ratio vs webp_m2 at equal SSIMULACRA2 (60-80), and encode time ratio')
    for e in encs:
        if e=='webp_m2': continue
        rs=[];ts=[]
        for (p,w) in keys:
            if (p,w,e) in by and (p,w,'webp_m2') in by:
                r=ratio(by[(p,w,e)],by[(p,w,'webp_m2')]); 
                t=np.mean([x['secs'] for x in by[(p,w,e)]])/np.mean([x['secs'] for x in by[(p,w,'webp_m2')]])
                rs.append((p[:8],w,r,t))
        g=[r for _,_,r,_ in rs if r]
        print(f"{e:15s} geomean {math.exp(np.mean(np.log(g))) if g else float('nan'):.3f} worst {max(g) if g else float('nan'):.3f} | "+" ".join(f"{p}@{w}:{r:.2f}/{t:.1f}x" if r else f"{p}@{w}:-" for p,w,r,t in rs))


if __name__ == '__main__':
    {'run': run, 'report': report}[sys.argv[1]]()
