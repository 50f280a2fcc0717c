"""Probe: left-to-right place-value variants (L1 no parentheses, L2 one equation per place, pv_more2 today's format with two more 2-digit exemplars) few-shot and hinted on 1-3-digit sums (6 per digit count), SmolLM2-135M.
Prints (right, right with the gold rationale written, n) per digit count. Run: .venv/bin/python benchmarks/format_probe_leftright.py"""
import os
os.environ["TQDM_DISABLE"]="1"
from star_kit.registry import load_registry
from star_kit.models import resolve_model
from star_kit.records import GenerationParams, Exemplar
from star_kit_plugins.arithmetic import place_value_rationale
r=load_registry(); base=resolve_model("smollm2-135m")
s=r.create("samplers","hf",base)
def parts(a,b):
    w=max(len(str(a)),len(str(b))); out=[]
    for p in range(w-1,-1,-1):
        u=10**p; out.append(((a//u%10)*u,(b//u%10)*u))
    return out
def L1(a,b):
    ps=parts(a,b); 
    if len(ps)==1: return f"{a} + {b} = {a+b}"
    return f"{a} + {b} = "+" + ".join(f"{x} + {y}" for x,y in ps)+" = "+" + ".join(str(x+y) for x,y in ps)+f" = {a+b}"
def L2(a,b):
    ps=parts(a,b); st=[f"{x} + {y} = {x+y}" for x,y in ps]
    if len(ps)>1: st.append(" + ".join(str(x+y) for x,y in ps)+f" = {a+b}")
    return f"{a} + {b}: "+", ".join(st)
Q=[(6,7),(47,85),(306,598),(5028,3917),(61954,27389)]
Q2=[(6,7),(47,85),(23,41),(306,598),(58,66),(5028,3917),(61954,27389)]
variants={"L1":(L1,Q),"L2":(L2,Q),"pv_more2":(place_value_rationale,Q2)}
t=r.create("tasks","arithmetic",eval_digits="1-3",format="place_value")
ex=t.examples("eval",18,0)
x=r.extractor("arithmetic")
for name,(f,qs) in variants.items():
    t._fewshot=[Exemplar(f"{a} + {b} = ?", f(a,b), str(a+b)) for a,b in qs]
    for hint in (False,True):
        outs=s.generate([t.prompt(e,hint=hint) for e in ex],GenerationParams(max_new_tokens=70,stop=t.stop))
        res={}
        for e,(o,) in zip(ex,outs):
            ok=x(o)==e.answer; gold=f(e.fields["a"],e.fields["b"])
            res.setdefault(e.fields["digits"],[]).append((ok, ok and gold in o))
        print(name,hint,{d:(sum(a for a,_ in l),sum(b for _,b in l),len(l)) for d,l in res.items()}, repr(outs[1][0][:90]), flush=True)
