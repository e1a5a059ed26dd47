"""Synthetic multilingual NER data for `xdner demo`, which must run offline on a fresh machine.

No gold multilingual NER corpus ships in an installable package, so the demo writes its own:
native sentence templates per language, filled with faker person / company / place names (plus
small curated native-script lists). To keep the task non-trivial, dev/test use entity strings
never seen in train and two templates train never sees, the same string can be PER in one sentence
and LOC/ORG in another, and same-type entities sit next to each other so B- vs I- matters.
"""

from __future__ import annotations

import random
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from faker import Faker

from .io import write_text

Key = tuple[str, ...]  # an entity string as its tokens

# Template slots -> entity type. CITY/REGION/TEAM are narrower pools so templates stay grammatical
# ("in der Stadt X", "ФК «X»"); they are tagged like their broad type.
_TAG = {"PER": "PER", "ORG": "ORG", "TEAM": "ORG", "LOC": "LOC", "CITY": "LOC", "REGION": "LOC"}
_NUMBERS = {"N": (2, 40), "YEAR": (1960, 2024), "GOALS": (0, 5)}
_SLOT = re.compile(r"\{(\w+)\}")
_DRAWS = 250  # faker draws per pool source, before de-duplication
_TRAIN_SHARE = 0.6  # share of each language's distinct entity strings that train may use
_AMBIGUOUS_RATE = 0.12  # how often a slot is filled from strings that also occur with another type
_HELD_OUT_TEMPLATES = 2  # the last templates of each table appear only in dev/test


@dataclass(frozen=True)
class _Language:
    """How to make one language's sentences: faker locale, templates, name and pool recipes."""

    locale: str
    templates: tuple[str, ...]
    org_patterns: tuple[str, ...]  # filled with {last} (a surname) and {city}
    team_patterns: tuple[str, ...]
    curated: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # slot -> native strings
    name_formats: tuple[str, ...] = ("{first} {last}",)
    city_method: str = "city"
    region_method: str | None = "administrative_unit"
    countries: bool = True  # False where faker's country names need articles the templates lack
    reject: str = ""  # regex: faker output to drop (wrong script, malformed)
    chars: bool = False  # character tokens, as in WikiANN zh


_LANGUAGES: dict[str, _Language] = {
    "en": _Language(
        locale="en_US",
        templates=(
            "{PER} joined {ORG} as chief financial officer in {YEAR}.",
            "Shares of {ORG} rose {N} percent on Monday after strong sales in {LOC}.",
            "{PER}, a spokesperson for {ORG}, declined to comment.",
            "Heavy rain is expected in {CITY} until the weekend.",
            "Talks between {ORG} and {ORG} broke down last week.",
            "{PER} was born in {CITY} and later moved to {LOC}.",
            "According to {PER}, the new plant near {CITY} will employ {N} people.",
            "Nobody expected the meeting to last that long.",
            "{PER} met {PER} in {LOC} on Friday.",
            "Weekend results: {TEAM} {TEAM} {GOALS}:{GOALS}.",
            "“We are very happy with the result,” {PER} told reporters.",
            "Officials from {LOC} and {LOC} met in {CITY} to discuss trade.",
            "The committee will publish its final report next Tuesday.",
            "The street festival in {CITY}, {REGION}, drew thousands of visitors.",
            "Inflation slowed for the third month in a row.",
            "{TEAM} coach {PER} praised the defence after the win.",
            "Prices at {ORG} stores in {REGION} fell by {N} percent in {YEAR}.",
            "Before moving to {CITY}, {PER} spent {N} years at {ORG}.",
        ),
        org_patterns=("{last} & Sons Ltd.", "{last} Holdings", "First National Bank of {city}", "{last} Brothers Inc."),
        team_patterns=("{city} United", "{city} Rovers", "FC {city}", "{city} Athletic"),
        curated={
            "PER": ("Washington", "Jordan", "Georgia", "Virginia", "Ford", "Lincoln", "Florence", "Dallas",
                    "Chelsea", "Mercedes", "Paris Hilton", "Victoria"),
            "ORG": ("Ford", "Lincoln", "Mercedes", "Hilton", "Amazon", "Goldman Sachs", "Bank of America",
                    "World Health Organization", "Morgan Stanley"),
            "TEAM": ("Chelsea", "Manchester United", "Los Angeles Lakers"),
            "CITY": ("Paris", "Florence", "Dallas", "Lincoln", "New York", "Los Angeles", "San Francisco",
                     "Hong Kong", "Cape Town", "Rio de Janeiro"),
            "LOC": ("Jordan", "Amazon", "Victoria", "New Zealand", "Sri Lanka", "Buenos Aires"),
        },
        name_formats=("{first} {last}", "{first} {last}", "{first} {initial}. {last}"),
        reject=r"\(",  # glosses like "Bouvet Island (Bouvetoya)"
    ),
    "de": _Language(
        locale="de_DE",
        templates=(
            "{PER} wechselte im Jahr {YEAR} als Finanzvorstand zu {ORG}.",
            "Die Aktie von {ORG} stieg am Montag um {N} Prozent.",
            "{PER} von {ORG} wollte sich dazu nicht äußern.",
            "In {CITY} soll es bis zum Wochenende stark regnen.",
            "Die Gespräche zwischen {ORG} und {ORG} sind vorerst gescheitert.",
            "{PER} wurde in {CITY} geboren und zog später nach {LOC}.",
            "Nach Angaben von {PER} sollen im neuen Werk bei {CITY} {N} Menschen arbeiten.",
            "Niemand hatte erwartet, dass die Sitzung so lange dauern würde.",
            "{PER} traf sich am Freitag in {LOC} mit {PER}.",
            "Ergebnisse vom Wochenende: {TEAM} {TEAM} {GOALS}:{GOALS}.",
            "„Wir sind mit dem Ergebnis sehr zufrieden“, sagte {PER}.",
            "Vertreter aus {LOC} und {LOC} berieten in {CITY} über neue Zölle.",
            "Der Ausschuss legt seinen Abschlussbericht am kommenden Dienstag vor.",
            "Das Stadtfest in {CITY} ({REGION}) lockte Tausende Besucher an.",
            "Die Inflation ging den dritten Monat in Folge zurück.",
            "Nach dem Sieg lobte {PER} die Abwehr von {TEAM}.",
            "Die Preise in den Filialen von {ORG} in {REGION} sanken {YEAR} um {N} Prozent.",
            "Vor dem Umzug nach {CITY} war {PER} {N} Jahre lang bei {ORG} tätig.",
        ),
        org_patterns=("{last} & Söhne GmbH", "{last} & Partner", "Stadtwerke {city}", "Sparkasse {city}",
                      "{last} Logistik AG"),
        team_patterns=("FC {city}", "SV {city}", "TSV {city}", "VfB {city}"),
        curated={
            "PER": ("Mercedes", "Porsche", "Bosch", "Siemens", "Linde", "Hertha", "Washington", "Paris Hilton"),
            "ORG": ("Mercedes", "Porsche", "Bosch", "Siemens", "Linde", "Lufthansa", "Müller & Söhne GmbH"),
            "TEAM": ("Hertha", "Bayern", "Schalke", "Borussia Dortmund"),
            "CITY": ("Paris", "Frankfurt am Main", "Bad Homburg", "Halle (Saale)", "Sankt Augustin",
                     "New York"),
            "REGION": ("Bayern", "Hessen", "Sachsen", "Niedersachsen", "Nordrhein-Westfalen", "Thüringen",
                       "Baden-Württemberg", "Rheinland-Pfalz", "Brandenburg", "Schleswig-Holstein",
                       "Mecklenburg-Vorpommern", "Sachsen-Anhalt"),
            "LOC": ("Washington", "Frankreich", "Italien", "Spanien", "Polen", "Österreich", "Japan", "China",
                    "Brasilien", "Kanada", "Norwegen", "Dänemark", "Ägypten", "Indien", "Mexiko", "Portugal",
                    "Griechenland", "Jordanien", "Südafrika", "Neuseeland", "Israel", "Russland", "Ungarn",
                    "Finnland", "Kroatien", "Argentinien", "Kenia", "Vietnam", "Australien", "Belgien"),
        },
        city_method="city_name",
        region_method=None,
        countries=False,
    ),
    "es": _Language(
        locale="es_ES",
        templates=(
            "{PER} se incorporó al consejo de {ORG} en {YEAR}.",
            "Las acciones de {ORG} subieron un {N} por ciento el lunes.",
            "{PER}, portavoz de {ORG}, declinó hacer comentarios.",
            "Se esperan fuertes lluvias en {CITY} hasta el fin de semana.",
            "Las negociaciones entre {ORG} y {ORG} fracasaron la semana pasada.",
            "{PER} nació en {CITY} y años después se mudó a {LOC}.",
            "Según {PER}, la nueva fábrica de {CITY} dará empleo a {N} personas.",
            "Nadie esperaba que la reunión durara tanto.",
            "{PER} se reunió con {PER} el viernes en {LOC}.",
            "Resultados de la jornada: {TEAM} {TEAM} {GOALS}-{GOALS}.",
            "«Estamos muy contentos con el resultado», afirmó {PER}.",
            "Representantes de {LOC} y {LOC} se reunieron en {CITY} para hablar de comercio.",
            "La comisión publicará su informe final el próximo martes.",
            "La feria de {CITY}, en {REGION}, atrajo a miles de visitantes.",
            "La inflación bajó por tercer mes consecutivo.",
            "El entrenador de {TEAM} elogió a {PER} tras la victoria.",
            "Los precios en las tiendas de {ORG} en {REGION} bajaron un {N} por ciento en {YEAR}.",
            "Antes de mudarse a {CITY}, {PER} trabajó {N} años en {ORG}.",
        ),
        org_patterns=("{last} e Hijos S.L.", "Grupo {last}", "Construcciones {last}", "Caja Rural de {city}"),
        team_patterns=("Real {city}", "Club Deportivo {city}", "Atlético {city}", "UD {city}"),
        curated={
            "PER": ("Victoria", "Mercedes", "Dolores", "Washington", "Jordán", "Paris Hilton"),
            "ORG": ("Santander", "Mercedes", "Banco Santander", "Telefónica", "Iberdrola", "Renfe",
                    "El Corte Inglés", "Real Academia Española"),
            "TEAM": ("Sevilla", "Granada", "Valencia", "Athletic Club"),
            "CITY": ("Santander", "Victoria", "Sevilla", "Granada", "Valencia", "Dolores", "París", "Barcelona",
                     "Bilbao", "Vigo", "Gijón", "Marbella", "Alcalá de Henares", "Jerez de la Frontera",
                     "Nueva York", "Ciudad de México", "Buenos Aires"),
            "REGION": ("Valencia", "Castilla y León", "Comunidad de Madrid", "Andalucía", "Cataluña"),
            "LOC": ("Jordán", "Washington"),
        },
        name_formats=("{first} {last}", "{first} {last} {last2}"),
    ),
    "ru": _Language(
        locale="ru_RU",
        # Entities stay in the nominative (subjects, appositions: "в городе X", "компании X") and verbs
        # in the present tense, so any name fits without case or gender agreement.
        templates=(
            "{PER} входит в совет директоров компании {ORG} с {YEAR} года.",
            "Акции компании {ORG} в понедельник подорожали на {N} %.",
            "{PER}, представитель компании {ORG}, не комментирует ситуацию.",
            "В городе {CITY} до выходных ожидаются сильные дожди.",
            "Переговоры между компаниями {ORG} и {ORG} зашли в тупик.",
            "{PER} родом из города {CITY}, но давно живёт в городе {CITY}.",
            "Как сообщает {PER}, на новом заводе в городе {CITY} будут работать более {N} тысяч человек.",
            "Никто не ожидал, что совещание затянется так надолго.",
            "{PER} и {PER} встречаются в пятницу в городе {CITY}.",
            "Результаты тура: {TEAM} {TEAM} {GOALS}:{GOALS}.",
            "«Мы очень довольны результатом», — говорит {PER}.",
            "{LOC} и {LOC} подписали соглашение о свободной торговле.",
            "Комиссия опубликует итоговый доклад в следующий вторник.",
            "Следующей остановкой гастролей станет {LOC}.",
            "Инфляция снижается третий месяц подряд.",
            "Главный тренер клуба {TEAM} {PER} хвалит защиту после победы.",
            "Маршрут {CITY} — {CITY} временно закрыт.",
            "{PER} более {N} лет работает в компании {ORG}.",
        ),
        org_patterns=("ООО «{last} и партнёры»", "Банк «{city}»", "АО «{city}энерго»", "Группа {last}"),
        team_patterns=("ФК «{city}»", "ХК «{city}»"),
        curated={
            "PER": ("Пушкин", "Чехов", "Королёв", "Жуковский", "Дзержинский", "Вашингтон", "Лена",
                    "Пэрис Хилтон"),
            "ORG": ("Россия", "Байкал", "Сибирь", "Газпром", "Сбербанк", "Аэрофлот", "Яндекс",
                    "Российские железные дороги"),
            "TEAM": ("«Спартак»", "«Зенит»", "«Локомотив»"),
            "CITY": ("Пушкин", "Чехов", "Королёв", "Жуковский", "Дзержинский", "Париж", "Нижний Новгород",
                     "Санкт-Петербург", "Ростов-на-Дону", "Нью-Йорк"),
            "LOC": ("Россия", "Байкал", "Сибирь", "Вашингтон", "Лена", "Южная Корея", "Новая Зеландия"),
        },
        name_formats=("{first} {last}",),
        city_method="city_name",
        region_method=None,  # faker's ru regions are abbreviations ("Оренбургская обл.")
        reject=r"[A-Za-z(]",  # Latin ("ОПХ (Heineken)"), district notes ("Троицк (Моск.)")
    ),
    "hi": _Language(
        locale="hi_IN",
        # Perfective transitive verbs with ने agree with the object, not with the (any-gender) person.
        templates=(
            "{PER} ने {YEAR} में {ORG} में मुख्य वित्तीय अधिकारी का पद संभाला।",
            "सोमवार को {ORG} के शेयरों में {N} प्रतिशत की बढ़त दर्ज की गई।",
            "{ORG} के प्रवक्ता {PER} ने इस मामले पर टिप्पणी करने से इनकार किया।",
            "मौसम विभाग के अनुसार {CITY} में सप्ताहांत तक भारी बारिश होगी।",
            "{ORG} और {ORG} के बीच बातचीत पिछले हफ्ते टूट गई।",
            "{PER} का जन्म {CITY} में हुआ था, लेकिन उनका बचपन {LOC} में बीता।",
            "{PER} के अनुसार {CITY} के पास बनने वाले नए कारखाने में {N} लोगों को रोजगार मिलेगा।",
            "किसी को उम्मीद नहीं थी कि बैठक इतनी लंबी चलेगी।",
            "{PER} ने शुक्रवार को {LOC} में {PER} से मुलाकात की।",
            "सप्ताहांत के नतीजे: {TEAM} {TEAM} {GOALS}-{GOALS}।",
            "“हम नतीजे से बहुत खुश हैं,” {PER} ने पत्रकारों से कहा।",
            "{LOC} और {LOC} के प्रतिनिधियों ने {CITY} में व्यापार पर चर्चा की।",
            "समिति अपनी अंतिम रिपोर्ट अगले मंगलवार को जारी करेगी।",
            "{REGION} के {CITY} शहर में आयोजित मेले में हजारों लोग पहुंचे।",
            "महंगाई लगातार तीसरे महीने कम हुई।",
            "जीत के बाद {TEAM} के कोच {PER} ने रक्षा पंक्ति की तारीफ की।",
            "{YEAR} में {REGION} में {ORG} की दुकानों पर कीमतें {N} प्रतिशत घटीं।",
            "{CITY} जाने से पहले {PER} ने {N} साल तक {ORG} में काम किया।",
        ),
        org_patterns=("{last} एंड संस", "{last} समूह", "{last} इंडस्ट्रीज़", "{city} सहकारी बैंक"),
        team_patterns=("{city} टाइगर्स", "{city} एफसी", "{city} वॉरियर्स"),
        curated={
            "PER": ("गंगा", "यमुना", "कावेरी", "टाटा", "बजाज", "गोदरेज", "वॉशिंगटन", "पेरिस हिल्टन"),
            "ORG": ("टाटा", "बजाज", "गोदरेज", "टाटा मोटर्स", "भारतीय स्टेट बैंक", "इंफोसिस",
                    "रिलायंस इंडस्ट्रीज़", "महिंद्रा एंड महिंद्रा", "भारतीय रेलवे"),
            "TEAM": ("मुंबई इंडियंस", "चेन्नई सुपर किंग्स"),
            "CITY": ("पेरिस", "मुंबई", "कोलकाता", "चेन्नई", "बेंगलुरु", "हैदराबाद", "पुणे", "जयपुर", "लखनऊ",
                     "नई दिल्ली", "अहमदाबाद", "भोपाल", "पटना", "इंदौर", "वाराणसी", "न्यूयॉर्क"),
            "REGION": ("उत्तर प्रदेश", "हिमाचल प्रदेश", "पश्चिम बंगाल"),
            "LOC": ("गंगा", "यमुना", "कावेरी", "वॉशिंगटन", "संयुक्त राज्य अमेरिका"),
        },
        city_method="city_name",
        reject=r"[A-Za-z]|[\u093e-\u094c]{2}",  # Latin ("नायर Inc"), doubled vowel signs ("बुरुाह")
    ),
    "zh": _Language(
        locale="zh_CN",
        templates=(
            "{PER}于{YEAR}年出任{ORG}首席财务官。",
            "周一，{ORG}股价上涨{N}%。",
            "{ORG}发言人{PER}拒绝置评。",
            "气象部门预计，{CITY}周末前将持续降雨。",
            "{ORG}与{ORG}的谈判上周破裂。",
            "{PER}出生于{REGION}{CITY}，后来移居{LOC}。",
            "据{PER}介绍，{CITY}附近的新工厂将提供{N}个就业岗位。",
            "谁也没想到会议会开这么久。",
            "{PER}周五在{LOC}会见了{PER}。",
            "{TEAM}以{GOALS}比{GOALS}战胜{TEAM}。",
            "“我们对结果非常满意，”{PER}对记者说。",
            "{LOC}和{LOC}的代表在{CITY}讨论贸易问题。",
            "委员会将于下周二公布最终报告。",
            "{REGION}{CITY}举办的庙会吸引了数万名游客。",
            "通货膨胀连续第三个月放缓。",
            "赛后，{TEAM}主教练{PER}称赞了球队的防守。",
            "{YEAR}年，{ORG}在{REGION}的门店价格下降了{N}%。",
            "{PER}在{ORG}工作了{N}年后搬到了{CITY}。",
        ),
        org_patterns=("{city}商业银行", "{last}氏集团", "{city}钢铁集团"),
        team_patterns=("{city}足球俱乐部", "{city}篮球队"),
        curated={
            "PER": ("华盛顿", "乔丹", "福特", "林肯", "希尔顿", "黄山", "帕丽斯·希尔顿"),
            "ORG": ("乔丹", "福特", "林肯", "希尔顿", "长城", "中国银行", "北京大学", "阿里巴巴集团",
                    "中国国际航空公司"),
            "CITY": ("巴黎", "林肯", "北京", "上海", "广州", "深圳", "杭州", "成都"),
            "LOC": ("华盛顿", "长城", "黄山", "长江", "黄河", "珠江三角洲"),
        },
        name_formats=("{last}{first}",),
        reject=r"[A-Za-z0-9]",
        chars=True,
    ),
}

DEFAULT_DEMO_LANGUAGES: tuple[str, ...] = tuple(_LANGUAGES)  # Latin, Cyrillic, Devanagari, Han

_README = """\
# Synthetic demo data (not a benchmark)

Written by `xdner demo` (`xtremedistil_ner/demo_data.py`): sentences from hand-written templates,
filled with names from the `faker` package and small curated lists. It exists so the demo runs
offline; scores on it say only that the pipeline works, nothing about real-world NER quality.

Per language: `train.txt`, `dev.txt`, `test.txt` (CoNLL: `token<TAB>tag`, IOB2 tags PER/ORG/LOC,
blank line between sentences) and `transfer.txt` (unlabeled, one sentence per line).
Dev/test use entity names that never occur in train, plus templates train never sees.

Check them as any CoNLL data, from this folder: `xdner validate .`. Rerun the demo that wrote them
(finished steps are skipped), from where it ran: `{command}`. For real data (WikiANN, or your own CoNLL files in this layout),
write a run config as in "Running on real data" in the project README and run `xdner run CONFIG`.
"""


def _is_punct(char: str) -> bool:
    return unicodedata.category(char).startswith("P")


def _tokens(text: str, chars: bool, entity: bool = False) -> list[str]:
    """WikiANN-style tokens: one per character for zh; elsewhere whitespace words with leading and
    trailing punctuation split off, except that a name keeps its abbreviation dot ("Co.", "S.A.")."""
    if chars:
        return [c for c in text if not c.isspace()]
    out: list[str] = []
    for word in text.split():
        lead: list[str] = []
        trail: list[str] = []
        while word and _is_punct(word[0]):
            lead.append(word[0])
            word = word[1:]
        while word and _is_punct(word[-1]) and not (entity and word[-1] == "." and len(word) > 1):
            trail.append(word[-1])
            word = word[:-1]
        out += lead + ([word] if word else []) + trail[::-1]
    return out


def _entity_pools(spec: _Language, seed: int) -> dict[str, list[Key]]:
    """Distinct entity strings per template slot, from a seeded faker plus the curated lists."""
    fake = Faker(spec.locale)
    fake.seed_instance(seed)
    pick = fake.random.choice

    def draw(make: Callable[[], str]) -> list[str]:
        return [make() for _ in range(_DRAWS)]

    def person() -> str:
        sex = pick(("male", "female"))
        first: str = getattr(fake, f"first_name_{sex}")()
        last = getattr(fake, f"last_name_{sex}")
        initial = fake.random_uppercase_letter()
        return pick(spec.name_formats).format(first=first, initial=initial, last=last(), last2=last())

    def patterned(patterns: tuple[str, ...]) -> Callable[[], str]:
        return lambda: pick(patterns).format(last=fake.last_name(), city=pick(cities))

    curated = {slot: list(spec.curated.get(slot, ())) for slot in _TAG}
    cities = draw(getattr(fake, spec.city_method)) + curated["CITY"]
    regions = (draw(getattr(fake, spec.region_method)) if spec.region_method else []) + curated["REGION"]
    countries = draw(fake.country) if spec.countries else []
    raw = {
        "PER": draw(person) + curated["PER"],
        "ORG": draw(fake.company) + draw(patterned(spec.org_patterns)) + curated["ORG"],
        "TEAM": draw(patterned(spec.team_patterns)) + curated["TEAM"],
        "CITY": cities,
        "REGION": regions,
        "LOC": cities + regions + countries + curated["LOC"],
    }
    reject = re.compile(spec.reject) if spec.reject else None
    return {
        slot: list(dict.fromkeys(
            key for s in strings
            if not (reject and reject.search(s)) and (key := tuple(_tokens(s, spec.chars, entity=True)))
        ))
        for slot, strings in raw.items()
    }


def _entity_types(pools: dict[str, list[Key]]) -> dict[Key, set[str]]:
    """Entity types each string occurs as; more than one makes it ambiguous ("Washington")."""
    types: dict[Key, set[str]] = {}
    for slot, pool in pools.items():
        for key in pool:
            types.setdefault(key, set()).add(_TAG[slot])
    return types


def _split_pools(
    pools: dict[str, list[Key]], rng: random.Random
) -> tuple[dict[str, list[Key]], dict[str, list[Key]]]:
    """Give each distinct string wholly to train or to dev/test (so held-out names are unseen), with
    ambiguous strings (several entity types) shuffled on their own so both sides get some."""
    types = _entity_types(pools)
    train: set[Key] = set()
    for group in ([k for k, t in types.items() if len(t) > 1], [k for k, t in types.items() if len(t) == 1]):
        rng.shuffle(group)
        train.update(group[: round(len(group) * _TRAIN_SHARE)])
    return (
        {slot: [k for k in pool if k in train] for slot, pool in pools.items()},
        {slot: [k for k in pool if k not in train] for slot, pool in pools.items()},
    )


class _Sampler:
    """Fills templates from one side's entity pools, favouring ambiguous strings now and then."""

    def __init__(self, pools: dict[str, list[Key]], chars: bool, rng: random.Random) -> None:
        types = _entity_types(pools)
        self.pools = pools
        self.ambiguous = {slot: [k for k in pool if len(types[k]) > 1] for slot, pool in pools.items()}
        self.chars = chars
        self.rng = rng

    def _entity(self, slot: str, used: set[Key]) -> Key:
        for _ in range(10):  # avoid "X met X"; give up quietly on tiny pools
            ambiguous = self.ambiguous[slot]
            source = ambiguous if ambiguous and self.rng.random() < _AMBIGUOUS_RATE else self.pools[slot]
            key = self.rng.choice(source)
            if key not in used:
                break
        used.add(key)
        return key

    def sentence(self, template: str) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        used: set[Key] = set()
        for i, part in enumerate(_SLOT.split(template)):
            if i % 2 == 0:
                out += [(t, "O") for t in _tokens(part, self.chars)]
            elif part in _NUMBERS:
                out += [(t, "O") for t in _tokens(str(self.rng.randint(*_NUMBERS[part])), self.chars)]
            else:
                key = self._entity(part, used)
                out += [(t, f"{'I' if j else 'B'}-{_TAG[part]}") for j, t in enumerate(key)]
        return out

    def corpus(self, templates: Sequence[str], n: int) -> list[list[tuple[str, str]]]:
        return [self.sentence(self.rng.choice(templates)) for _ in range(n)]


def _conll(sentences: list[list[tuple[str, str]]]) -> str:
    return "".join("".join(f"{tok}\t{tag}\n" for tok, tag in s) + "\n" for s in sentences)


def generate_demo_corpus(
    out_dir: Path,
    languages: Sequence[str] = DEFAULT_DEMO_LANGUAGES,
    n_train: int = 600,
    n_dev: int = 200,
    n_test: int = 200,
    n_transfer: int = 1500,
    seed: int = 13,
    command: str = "xdner demo",
) -> dict[str, dict[str, Path]]:
    """Write `<out_dir>/<lang>/{train,dev,test}.txt` (CoNLL) and `transfer.txt` (unlabeled) plus a
    README naming `command`, the demo that wrote them; return `{lang: {split: path}}`. Same seed
    and command -> byte-identical files."""
    unknown = [lang for lang in languages if lang not in _LANGUAGES]
    if unknown:
        raise ValueError(f"no demo templates for {unknown}; choose from {list(_LANGUAGES)}")
    if min(n_train, n_dev, n_test, n_transfer) < 0:
        raise ValueError("sentence counts must be >= 0")
    out_dir = Path(out_dir)
    paths: dict[str, dict[str, Path]] = {}
    for lang in languages:
        spec = _LANGUAGES[lang]
        rng = random.Random(f"{seed}:{lang}")  # per language, so adding one leaves the others as they were
        pools = _entity_pools(spec, seed)
        train_pools, held_pools = _split_pools(pools, rng)
        held = _Sampler(held_pools, spec.chars, rng)
        labeled = {
            "train": _Sampler(train_pools, spec.chars, rng).corpus(spec.templates[:-_HELD_OUT_TEMPLATES], n_train),
            "dev": held.corpus(spec.templates, n_dev),
            "test": held.corpus(spec.templates, n_test),
        }
        transfer = _Sampler(pools, spec.chars, rng).corpus(spec.templates, n_transfer)
        lang_dir = out_dir / lang
        paths[lang] = {split: lang_dir / f"{split}.txt" for split in (*labeled, "transfer")}
        for split, sentences in labeled.items():
            write_text(paths[lang][split], _conll(sentences))
        write_text(paths[lang]["transfer"], "".join(" ".join(t for t, _ in s) + "\n" for s in transfer))
    write_text(out_dir / "README.md", _README.format(command=command))
    return paths
