"""Probe: right-to-left column-format variants few-shot and hinted on 1-3-digit sums (6 per digit count), SmolLM2-135M.
Prints (right, right and verified, n) per digit count. Run: .venv/bin/python benchmarks/format_probe_column.py"""
import os
os.environ["TQDM_DISABLE"]="1"
from star_kit.registry import load_registry
from star_kit.models import resolve_model
from star_kit.records import GenerationParams, Exemplar
r=load_registry(); base=resolve_model("smollm2-135m")
s=r.create("samplers","hf",base)
def col(a,b,sep=", ",sp=" ",tail=False):
    w=max(len(str(a)),len(str(b))); st=[]; c=0
    for p in range(w):
        x,y=a//10**p%10,b//10**p%10; z=x+y+c
        st.append(f"{x}{sp}+{sp}{y}"+(f"{sp}+{sp}1" if c else "")+f"{sp}={sp}{z}"); c=z//10
    return f"{a} + {b}: "+sep.join(st)+(f", so {a+b}" if tail else "")
Q=[(6,7),(3,2),(47,85),(21,34),(306,598),(5028,3917),(61954,27389)]
variants={
 "spaced": lambda a,b: col(a,b),
 "spaced_tail": lambda a,b: col(a,b,tail=True),
 "compact_tail": lambda a,b: col(a,b,sp="",tail=True),
}
t=r.create("tasks","arithmetic",eval_digits="1-3")
ex=t.examples("eval",18,0)
v=r.verifier("arithmetic-column"); x=r.extractor("arithmetic")
for name,f in variants.items():
    t._fewshot=[Exemplar(f"{a} + {b} = ?", f(a,b), str(a+b)) for a,b in Q]
    for hint in (False,True):
        outs=s.generate([t.prompt(e,hint=hint) for e in ex],GenerationParams(max_new_tokens=60,stop=t.stop))
        res={}
        for e,(o,) in zip(ex,outs):
            ok=x(o)==e.answer; rat=t.rationale_of(o).replace(f", so {e.answer}","")
            res.setdefault(e.fields["digits"],[]).append((ok, ok and v(e,rat) is None))
        print(name,hint,{d:(sum(a for a,_ in l),sum(b for _,b in l),len(l)) for d,l in res.items()}, repr(outs[1][0][:80]), flush=True)
