"""The world's constructions: slot specs and an English, a Chinese and a German template.

Slot spec syntax (see :mod:`.grammar`): ``name:domain`` draws uniformly from the domain;
``q:person!=p`` excludes the value of slot ``p``; ``c2:city!=home(p)`` excludes the home
city of person ``p``; ``h:hour|part`` draws from the hours allowed in that part of the day.
A template writes ``{slot}`` for the plain word and ``{slot.form}`` for another form
(``{o.pl}`` plural, ``{o.cl}`` Chinese classifier, ``{c.art}`` the English article a/an,
``{p.subj}`` pronoun, ``{p.city}`` the person's home city...), and ``{slot.form~other}``
for a form that agrees with the grammatical gender of another slot (German adjectives:
``{o.ein_acc} {c.acc_mixed~o} {o.acc}`` is einen roten Ball / eine rote Tasse / ein
rotes Buch).

Long-range dependencies: pronouns agree with a person named earlier (``{p.subj}``,
``{q.obj}``, ``{q.poss}``); classifiers agree with their noun across an adjective
(一{o.cl}{c}的{o}); facts about a person (job, home city, country, favourite food) are
forms of the person slot and cost 0 bits once the person is chosen.

**German** (``DE_TEMPLATES``, one per construction: all 27 have one). The German word
order is written into each template: the finite verb second in a main clause, also after
a fronted time phrase or adverb (Am Montagmorgen *kaufte* Anna ..., deshalb *kaufte*
Tom ...); verb-final in subordinate clauses (weil sie mit Tom Schach spielen *wollte*;
dass die Tasche, die er gekauft *hat*, sehr schön *ist*); the infinitive or participle
at the end of a clause with a modal, the future or the perfect (wird ... *fliegen*,
hat ... *geschenkt*, ist ... *gereist*); verb first in yes/no questions (Hat ...?,
Will ...?); time before place before object (am Freitagabend im Park zwei Bälle); times
as one compound (am Montagmorgen, jeden Freitagabend, freitagabends). The agreement the
templates rely on (article and adjective with the noun's gender and case, im/am/zum/zur,
er/sie/es for an animal or object, sein/ihr, der/die as relative pronouns) is made by
the lexicon's forms (:mod:`.german`). A construction without a German template simply
has no German: :meth:`.grammar.Sentence.render` raises a ValueError for it.
"""

from __future__ import annotations

# Time phrases shared by several constructions.
_DP = "day:day part:part"
_CLK = "day:day part:part hour:hour|part min:minute"
_DP_EN = "{day} {part}"
_DP_ZH = "{day}{part}"
_CLK_EN = "{day} {part} at {hour}{min}"
_CLK_ZH = "{day}{part}{hour}{min}"
_MD = "month:month mday:mday|month"

# (name, category, slots, en template, zh template)
CONSTRUCTIONS: list[tuple[str, str, str, str, str]] = [
    # ---------------------------------------------------------------- statements
    ("buy", "statement",
     f"p:person n:number c:color o:object pl:place city:city {_DP}",
     f"{{p}} bought {{n}} {{c}} {{o.pl}} at the {{pl}} in {{city}} on {_DP_EN}.",
     f"{{p}}{_DP_ZH}在{{city}}的{{pl}}买了{{n}}{{o.cl}}{{c}}的{{o}}。"),
    ("zoo", "statement",
     f"{_CLK} p:person n:number a:animal city:city",
     f"On {_CLK_EN}, {{p}} saw {{n}} {{a.pl}} at the zoo in {{city}}, {{city.country}}.",
     f"{_CLK_ZH},{{p}}在{{city.country}}{{city}}的动物园看到了{{n}}{{a.cl}}{{a}}。"),
    ("meet", "statement",
     f"p:person q:person!=p pl:place city:city {_CLK}",
     f"{{p}} met {{q}} at the {{pl}} in {{city}} on {_CLK_EN}.",
     f"{{p}}{_CLK_ZH}在{{city}}的{{pl}}见到了{{q}}。"),
    ("gift", "statement",
     f"p:person q:person!=p pl:place {_DP} n:number c:color o:object",
     f"{{p}} met {{q}} at the {{pl}} on {_DP_EN} and gave {{q.obj}} {{n}} {{c}} {{o.pl}}.",
     f"{{p}}{_DP_ZH}在{{pl}}见到了{{q}},送给{{q.obj}}{{n}}{{o.cl}}{{c}}的{{o}}。"),
    ("because", "statement",
     f"p:person pl:place {_CLK} act:activity q:person!=p",
     f"{{p}} went to the {{pl}} on {_CLK_EN} because {{p.subj}} wanted to {{act}} with {{q}}.",
     f"{{p}}{_CLK_ZH}去了{{pl}},因为{{p.subj}}想和{{q}}一起{{act}}。"),
    ("lost", "statement",
     f"p:person c:color o:object city:city {_DP} q:person!=p pl:place",
     f"{{p}} lost {{c.art}} {{c}} {{o}} in {{city}} on {_DP_EN}, but {{q}} found it at the {{pl}}.",
     f"{{p}}{_DP_ZH}在{{city}}丢了一{{o.cl}}{{c}}的{{o}},但是{{q}}在{{pl}}找到了它。"),
    ("pets", "statement",
     f"p:person n:number c:color a:animal pl:place {_DP}",
     f"{{p}} has {{n}} {{c}} {{a.pl}}, and {{p.subj}} takes them to the {{pl}} every {_DP_EN}.",
     f"{{p}}有{{n}}{{a.cl}}{{c}}的{{a}},{{p.subj}}每个{_DP_ZH}都带它们去{{pl}}。"),
    ("farm", "statement",
     "n:number a:animal n2:number a2:animal!=a p:person city:city",
     "There are {n} {a.pl} and {n2} {a2.pl} on {p}'s farm near {city}.",
     "{p}在{city}附近的农场里有{n}{a.cl}{a}和{n2}{a2.cl}{a2}。"),
    ("flight", "statement",
     f"p:person q:person!=p city:city c2:city!=city {_MD}",
     "{p} will fly from {city} to {c2} with {q} on {month} {mday}.",
     "{p}{month}{mday}要和{q}一起从{city}飞往{c2}。"),
    ("price", "statement",
     f"p:person n:number c:color o:object pl:place {_DP}",
     f"{{p}} paid {{n}} yuan for {{c.art}} {{c}} {{o}} at the {{pl}} on {_DP_EN}.",
     f"{{p}}{_DP_ZH}在{{pl}}花{{n}}元买了一{{o.cl}}{{c}}的{{o}}。"),
    ("schedule", "statement",
     f"{_CLK} p:person act:activity q:person!=p city:city",
     f"On {_CLK_EN}, {{p}} will {{act}} with {{q}} in {{city}}.",
     f"{_CLK_ZH},{{p}}要和{{q}}一起在{{city}}{{act}}。"),
    ("birthday", "statement",
     f"{_MD} p:person q:person!=p n:number f:food",
     "On {month} {mday}, {p} gave {q} {n} {f.pl} for {q.poss} birthday.",
     "{month}{mday},{p}送给{q}{n}{f.cl}{f}作为{q.poss}生日礼物。"),
    ("order", "statement",
     f"{_CLK} p:person dr:drink f:food city:city",
     f"On {_CLK_EN}, {{p}} ordered {{dr.cup}} {{dr}} and {{f.art}} {{f}} at the cafe in {{city}}.",
     f"{_CLK_ZH},{{p}}在{{city}}的咖啡馆点了一杯{{dr}}和一{{f.cl}}{{f}}。"),
    # ---------------------------------------------------------------- facts
    ("intro", "fact",
     f"p:person act:activity q:person!=p pl:place {_DP}",
     "{p} is {p.job_art} {p.job} from {p.city}, and {p.subj} likes to {act} with {q} "
     "at the {pl} on {day} {part.pl}.",
     f"{{p}}是来自{{p.city}}的{{p.job}},{{p.subj}}喜欢{_DP_ZH}和{{q}}一起在{{pl}}{{act}}。"),
    ("home", "fact",
     f"p:person c2:city!=home(p) q:person!=p {_MD}",
     "{p} lives in {p.city}, which is in {p.country}, but {p.subj} went to {c2} with {q} "
     "on {month} {mday}.",
     "{p}住在{p.country}的{p.city},但是{p.subj}{month}{mday}和{q}一起去了{c2}。"),
    ("favorite", "fact",
     f"p:person q:person!=p n:number pl:place {_DP}",
     f"{{p}} loves {{p.food_pl}}, so {{q}} bought {{p.obj}} {{n}} {{p.food_pl}} at the {{pl}} "
     f"on {_DP_EN}.",
     f"{{p}}最喜欢吃{{p.food}},所以{{q}}{_DP_ZH}在{{pl}}给{{p.obj}}买了{{n}}{{p.food_cl}}"
     "{p.food}。"),
    ("works", "fact",
     f"p:person pl:place q:person!=p {_DP}",
     f"{{p}} works as {{p.job_art}} {{p.job}} in {{p.city}}, and {{p.subj}} goes to the "
     f"{{pl}} with {{q}} every {_DP_EN}.",
     f"{{p}}在{{p.city}}当{{p.job}},{{p.subj}}每个{_DP_ZH}都和{{q}}一起去{{pl}}。"),
    # ---------------------------------------------------------------- questions
    ("q_did", "question",
     f"p:person q:person!=p n:number c:color o:object {_DP}",
     f"Did {{p}} give {{q}} {{n}} {{c}} {{o.pl}} on {_DP_EN}?",
     f"{{p}}{_DP_ZH}给了{{q}}{{n}}{{o.cl}}{{c}}的{{o}}吗?"),
    ("q_where", "question",
     f"city:city p:person q:person!=p c:color a:animal {_DP}",
     f"Where in {{city}} did {{p}} and {{q}} see {{c.art}} {{c}} {{a}} on {_DP_EN}?",
     f"{{p}}和{{q}}{_DP_ZH}在{{city}}的什么地方看到了一{{a.cl}}{{c}}的{{a}}?"),
    ("q_how_many", "question",
     f"c:color o:object p:person q:person!=p pl:place {_DP}",
     f"How many {{c}} {{o.pl}} did {{p}} buy for {{q}} at the {{pl}} on {_DP_EN}?",
     f"{{p}}{_DP_ZH}在{{pl}}给{{q}}买了多少{{o.cl}}{{c}}的{{o}}?"),
    ("q_who", "question",
     f"p:person c:color o:object pl:place city:city {_DP}",
     f"Who gave {{p}} {{c.art}} {{c}} {{o}} at the {{pl}} in {{city}} on {_DP_EN}?",
     f"谁{_DP_ZH}在{{city}}的{{pl}}送给了{{p}}一{{o.cl}}{{c}}的{{o}}?"),
    ("q_when", "question",
     "p:person act:activity q:person!=p pl:place city:city",
     "When will {p} {act} with {q} at the {pl} in {city}?",
     "{p}什么时候和{q}一起在{city}的{pl}{act}?"),
    ("q_fact", "question",
     f"p:person act:activity q:person!=p pl:place {_DP}",
     f"Does {{p}}, {{p.job_art}} {{p.job}} from {{p.city}}, want to {{act}} with {{q}} "
     f"at the {{pl}} on {_DP_EN}?",
     f"来自{{p.city}}的{{p.job}}{{p}}{_DP_ZH}想和{{q}}一起在{{pl}}{{act}}吗?"),
    # ---------------------------------------------------------------- opinions
    ("op_object", "opinion",
     "p:person c:color o:object city:city day:day deg:degree adj:adj_object",
     "{p} thinks that the {c} {o} {p.subj} bought in {city} on {day} is {deg} {adj}.",
     "{p}觉得{p.subj}{day}在{city}买的那{o.cl}{c}的{o}{deg}{adj}。"),
    ("op_food", "opinion",
     f"p:person f:food pl:place city:city {_DP} deg:degree adj:adj_food",
     f"{{p}} said that the {{f.pl}} {{p.subj}} ate at the {{pl}} in {{city}} on {_DP_EN} "
     "were {deg} {adj}.",
     f"{{p}}说{{p.subj}}{_DP_ZH}在{{city}}的{{pl}}吃的{{f}}{{deg}}{{adj}}。"),
    ("op_animal", "opinion",
     "p:person pol:polarity q:person!=p c:color a:animal adj:adj_animal",
     "{p} {pol.like} {q}'s {c} {a} because it is {pol} {adj}.",
     "{p}{pol.like}{q}的那{a.cl}{c}的{a},因为它{pol}{adj}。"),
    ("op_city", "opinion",
     "p:person q:person!=p day:day c2:city!=home(p) s:season deg:degree adj:adj_city",
     "{p}, who lives in {p.city}, told {q} on {day} that {c2} is {deg} {adj} in {s}.",
     "住在{p.city}的{p}{day}告诉{q},{c2}的{s}{deg}{adj}。"),
]

# German templates by construction name (see the module docstring).
_DP_DE = "{day}{part.cmp}"
_CLK_DE = "{day}{part.cmp} um {hour}{min} Uhr"
_MD_DE = "{mday} {month}"

DE_TEMPLATES: dict[str, str] = {
    # ------------------------------------------------------------ statements
    "buy": f"{{p}} kaufte am {_DP_DE} {{pl.at}} {{pl.dat}} in {{city}} {{n}} {{c.pl}} {{o.pl}}.",
    "zoo": f"Am {_CLK_DE} sah {{p}} im Zoo von {{city}} in {{city.country}} {{n}} {{a.pl}}.",
    "meet": f"{{p}} traf {{q}} am {_CLK_DE} {{pl.at}} {{pl.dat}} in {{city}}.",
    "gift": f"{{p}} traf {{q}} am {_DP_DE} {{pl.at}} {{pl.dat}} und schenkte {{q.dat}} {{n}} "
            "{c.pl} {o.pl}.",
    "because": f"{{p}} ging am {_CLK_DE} {{pl.to}} {{pl.dat}}, weil {{p.subj}} mit {{q}} "
               "{act} wollte.",
    "lost": f"{{p}} verlor am {_DP_DE} in {{city}} {{o.ein_acc}} {{c.acc_mixed~o}} {{o.acc}}, "
            "aber {q} fand {o.it_acc} {pl.at} {pl.dat}.",
    "pets": f"{{p}} hat {{n}} {{c.pl}} {{a.pl}}, und {{p.subj}} bringt sie jeden {_DP_DE} "
            "{pl.to} {pl.dat}.",
    "farm": "Auf {p.gen} Bauernhof bei {city} gibt es {n} {a.pl} und {n2} {a2.pl}.",
    "flight": f"{{p}} wird am {_MD_DE} mit {{q}} von {{city}} nach {{c2}} fliegen.",
    "price": f"{{p}} bezahlte am {_DP_DE} {{pl.at}} {{pl.dat}} {{n}} Yuan für {{o.ein_acc}} "
             "{c.acc_mixed~o} {o.acc}.",
    "schedule": f"Am {_CLK_DE} wird {{p}} mit {{q}} in {{city}} {{act}}.",
    "birthday": f"Am {_MD_DE} schenkte {{p}} {{q}} {{n}} {{f.pl}} zu {{q.poss_dat_m}} "
                "Geburtstag.",
    "order": f"Am {_CLK_DE} bestellte {{p}} im Café in {{city}} {{dr.cup}} {{dr}} und "
             "{f.ein_acc} {f.acc}.",
    # ------------------------------------------------------------ facts
    "intro": "{p} ist {p.job} aus {p.city}, und {p.subj} mag es, {day.adv}{part.adv} mit {q} "
             "{pl.at} {pl.dat} {act.zu}.",
    "home": f"{{p}} wohnt in {{p.city}}, das in {{p.country}} liegt, aber {{p.subj}} ist am "
            f"{_MD_DE} mit {{q}} nach {{c2}} gereist.",
    "favorite": f"{{p}} liebt {{p.food_pl}}, deshalb kaufte {{q}} {{p.dat}} am {_DP_DE} "
                "{pl.at} {pl.dat} {n} {p.food_pl}.",
    "works": f"{{p}} arbeitet als {{p.job}} in {{p.city}}, und {{p.subj}} geht jeden {_DP_DE} "
             "mit {q} {pl.to} {pl.dat}.",
    # ------------------------------------------------------------ questions
    "q_did": f"Hat {{p}} {{q}} am {_DP_DE} {{n}} {{c.pl}} {{o.pl}} geschenkt?",
    "q_where": f"Wo in {{city}} haben {{p}} und {{q}} am {_DP_DE} {{a.ein_acc}} "
               "{c.acc_mixed~a} {a.acc} gesehen?",
    "q_how_many": f"Wie viele {{c.pl}} {{o.pl}} hat {{p}} am {_DP_DE} {{pl.at}} {{pl.dat}} "
                  "für {q} gekauft?",
    "q_who": f"Wer hat {{p}} am {_DP_DE} {{pl.at}} {{pl.dat}} in {{city}} {{o.ein_acc}} "
             "{c.acc_mixed~o} {o.acc} geschenkt?",
    "q_when": "Wann wird {p} mit {q} {pl.at} {pl.dat} in {city} {act}?",
    "q_fact": f"Will {{p}}, {{p.job_art}} {{p.job}} aus {{p.city}}, am {_DP_DE} mit {{q}} "
              "{pl.at} {pl.dat} {act}?",
    # ------------------------------------------------------------ opinions
    "op_object": "{p} findet, dass {o.der_nom} {c.nom_weak~o} {o}, {o.der_acc} {p.subj} am "
                 "{day} in {city} gekauft hat, {deg} {adj} ist.",
    "op_food": f"{{p}} sagte, dass die {{f.pl}}, die {{p.subj}} am {_DP_DE} {{pl.at}} "
               "{pl.dat} in {city} gegessen hatte, {deg} {adj} waren.",
    "op_animal": "{p} mag {a.der_acc} {c.acc_weak~a} {a.acc} von {q} {pol}, weil {a.it_nom} "
                 "{pol} {adj} ist.",
    "op_city": "{p}, {p.rel} in {p.city} wohnt, sagte {q} am {day}, dass {c2} {s.at} {s.dat} "
               "{deg} {adj} ist.",
}

# Content words written in the templates themselves (verbs, nouns), per language; they
# count towards World.vocabulary together with the lexicon's word lists.
TEMPLATE_WORDS: dict[str, tuple[str, ...]] = {
    "en": ("bought", "saw", "zoo", "met", "gave", "went", "wanted", "lost", "found", "has",
           "takes", "farm", "fly", "paid", "yuan", "ordered", "birthday", "lives", "loves",
           "works", "goes", "likes", "give", "see", "buy", "want", "thinks", "said", "ate",
           "told", "like", "cup", "glass"),
    "zh": ("买", "看到", "动物园", "见到", "送给", "去", "想", "丢", "找到", "有", "带",
           "农场", "附近", "飞往", "花", "元", "点", "生日礼物", "住", "最喜欢", "吃", "当",
           "喜欢", "觉得", "说", "告诉", "来自", "什么地方", "什么时候", "多少", "谁"),
    "de": ("kaufte", "sah", "Zoo", "traf", "schenkte", "ging", "wollte", "verlor", "fand",
           "hat", "bringt", "Bauernhof", "gibt", "fliegen", "bezahlte", "Yuan", "bestellte",
           "Café", "Geburtstag", "mag", "wohnt", "liegt", "gereist", "liebt", "arbeitet",
           "geht", "geschenkt", "gesehen", "gekauft", "findet", "sagte", "gegessen", "Will",
           "Wer", "Wo", "Wann", "Wie viele"),
}
