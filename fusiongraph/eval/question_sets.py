"""Question sets with references for `fusiongraph judge-eval --generate`: easy questions the embedded default
should get right often, to measure (and fit) the judges on.

* ``phrasings``: arithmetic in several phrasings ("What is 7 times 8?", "Compute 12*7", "What is the sum of
  34 and 58?", "Add 12 and 30.", "Multiply 6 by 9.", "Subtract 17 from 81.", ...), products of 2..12 and
  sums and differences of two-digit numbers; the reference is computed.
* ``facts``: short factual questions from :data:`FACTS` (capitals of countries and a few other well-known
  facts, each checked), matched ``exact`` (the reference appears in the answer as a whole word or phrase).
* ``easy``: the two alternated.

``split`` keeps a fit set and a test set apart: ``fit`` and ``test`` take disjoint halves of the facts
(even and odd positions in the list) and of the arithmetic (by a hash of the question), ``all`` both.
"""

from __future__ import annotations

import hashlib
import random

SPLITS = ("all", "fit", "test")

# (country, capital): names without accents (the exact match does not fold them), capitals not in dispute
CAPITALS = [
    ("France", "Paris"),
    ("Germany", "Berlin"),
    ("Italy", "Rome"),
    ("Spain", "Madrid"),
    ("Portugal", "Lisbon"),
    ("Japan", "Tokyo"),
    ("China", "Beijing"),
    ("Russia", "Moscow"),
    ("Egypt", "Cairo"),
    ("Canada", "Ottawa"),
    ("Australia", "Canberra"),
    ("Greece", "Athens"),
    ("Ireland", "Dublin"),
    ("Norway", "Oslo"),
    ("Sweden", "Stockholm"),
    ("Finland", "Helsinki"),
    ("Denmark", "Copenhagen"),
    ("Poland", "Warsaw"),
    ("Austria", "Vienna"),
    ("Hungary", "Budapest"),
    ("the Czech Republic", "Prague"),
    ("the Netherlands", "Amsterdam"),
    ("Belgium", "Brussels"),
    ("Switzerland", "Bern"),
    ("Turkey", "Ankara"),
    ("Kenya", "Nairobi"),
    ("Nigeria", "Abuja"),
    ("Argentina", "Buenos Aires"),
    ("Chile", "Santiago"),
    ("Peru", "Lima"),
    ("Cuba", "Havana"),
    ("Thailand", "Bangkok"),
    ("Vietnam", "Hanoi"),
    ("South Korea", "Seoul"),
    ("Indonesia", "Jakarta"),
    ("the Philippines", "Manila"),
    ("Iran", "Tehran"),
    ("Iraq", "Baghdad"),
    ("Saudi Arabia", "Riyadh"),
    ("Morocco", "Rabat"),
    ("Ethiopia", "Addis Ababa"),
    ("Venezuela", "Caracas"),
    ("New Zealand", "Wellington"),
    ("the United Kingdom", "London"),
    ("Pakistan", "Islamabad"),
    ("Bangladesh", "Dhaka"),
    ("Afghanistan", "Kabul"),
    ("Syria", "Damascus"),
    ("Lebanon", "Beirut"),
    ("Jordan", "Amman"),
    ("Ghana", "Accra"),
    ("Senegal", "Dakar"),
    ("Uganda", "Kampala"),
    ("Zimbabwe", "Harare"),
    ("Romania", "Bucharest"),
    ("Bulgaria", "Sofia"),
    ("Serbia", "Belgrade"),
    ("Croatia", "Zagreb"),
    ("Estonia", "Tallinn"),
    ("Latvia", "Riga"),
    ("Lithuania", "Vilnius"),
    ("Nepal", "Kathmandu"),
    ("Malaysia", "Kuala Lumpur"),
    ("Qatar", "Doha"),
    ("Libya", "Tripoli"),
    ("Sudan", "Khartoum"),
    ("Algeria", "Algiers"),
    ("Tunisia", "Tunis"),
    ("Angola", "Luanda"),
    ("Jamaica", "Kingston"),
    ("Ecuador", "Quito"),
    ("Uruguay", "Montevideo"),
    ("Cambodia", "Phnom Penh"),
    ("Laos", "Vientiane"),
    ("North Korea", "Pyongyang"),
    ("India", "New Delhi"),
    ("Mexico", "Mexico City"),
    ("Brazil", "Brasilia"),
    ("the United States", "Washington"),
    ("Iceland", "Reykjavik"),
    ("Slovakia", "Bratislava"),
    ("Slovenia", "Ljubljana"),
    ("Belarus", "Minsk"),
    ("Albania", "Tirana"),
    ("North Macedonia", "Skopje"),
    ("Bosnia and Herzegovina", "Sarajevo"),
    ("Montenegro", "Podgorica"),
    ("Malta", "Valletta"),
    ("Cyprus", "Nicosia"),
    ("Georgia", "Tbilisi"),
    ("Armenia", "Yerevan"),
    ("Azerbaijan", "Baku"),
    ("Uzbekistan", "Tashkent"),
    ("Oman", "Muscat"),
    ("the United Arab Emirates", "Abu Dhabi"),
    ("Bahrain", "Manama"),
    ("Mali", "Bamako"),
    ("Niger", "Niamey"),
    ("Rwanda", "Kigali"),
    ("Somalia", "Mogadishu"),
    ("Zambia", "Lusaka"),
    ("Mozambique", "Maputo"),
    ("Madagascar", "Antananarivo"),
    ("Namibia", "Windhoek"),
    ("Botswana", "Gaborone"),
    ("Malawi", "Lilongwe"),
    ("Tanzania", "Dodoma"),
    ("Sierra Leone", "Freetown"),
    ("Liberia", "Monrovia"),
    ("Guinea", "Conakry"),
    ("Mauritania", "Nouakchott"),
    ("Panama", "Panama City"),
    ("Guatemala", "Guatemala City"),
    ("Honduras", "Tegucigalpa"),
    ("Nicaragua", "Managua"),
    ("El Salvador", "San Salvador"),
    ("the Dominican Republic", "Santo Domingo"),
    ("Haiti", "Port-au-Prince"),
    ("Fiji", "Suva"),
    ("Papua New Guinea", "Port Moresby"),
    ("Bhutan", "Thimphu"),
    ("the Bahamas", "Nassau"),
    ("Barbados", "Bridgetown"),
    ("Kazakhstan", "Astana"),
]

CAPITAL_PHRASINGS = [
    "What is the capital of {country}?",
    "What is the capital city of {country}?",
    "Name the capital of {country}.",
    "Which city is the capital of {country}?",
]

# (question, reference): other short facts with one accepted answer
OTHER_FACTS = [
    ("What is the largest planet in the solar system?", "Jupiter"),
    ("Which planet is known as the Red Planet?", "Mars"),
    ("Who wrote Romeo and Juliet?", "Shakespeare"),
    ("What is the chemical symbol for gold?", "Au"),
    ("What is the largest ocean on Earth?", "Pacific"),
    ("What is the longest river in Africa?", "Nile"),
    ("Which element has the atomic number 1?", "hydrogen"),
    ("In which country are the pyramids of Giza?", "Egypt"),
    ("What is the tallest mountain in the world?", "Everest"),
    ("What language is mainly spoken in Brazil?", "Portuguese"),
    ("What is the currency of Japan?", "yen"),
    ("Who was the first person to walk on the Moon?", "Armstrong"),
    ("How many legs does a spider have?", "8"),
    ("Which animal is known as the king of the jungle?", "lion"),
    ("What is the smallest prime number?", "2"),
    ("Who painted the Mona Lisa?", "da Vinci"),
    ("What gas do plants take in from the air for photosynthesis?", "carbon dioxide"),
    ("What is the hardest natural substance?", "diamond"),
    ("How many continents are there on Earth?", "7"),
    ("Which planet is closest to the Sun?", "Mercury"),
    ("What is the chemical symbol for iron?", "Fe"),
    ("What is the chemical symbol for silver?", "Ag"),
    ("What is the chemical symbol for sodium?", "Na"),
    ("Who wrote Hamlet?", "Shakespeare"),
    ("Who developed the theory of relativity?", "Einstein"),
    ("Who wrote Pride and Prejudice?", "Austen"),
    ("Which planet is famous for its large rings?", "Saturn"),
    ("What is the largest hot desert in the world?", "Sahara"),
    ("What is the largest country in the world by area?", "Russia"),
    ("What language is mainly spoken in Mexico?", "Spanish"),
    ("What is the currency of the United States?", "dollar"),
    ("Which organ pumps blood through the human body?", "heart"),
    ("What gas do humans need to breathe in to live?", "oxygen"),
    ("What colour do you get when you mix blue and yellow?", "green"),
    ("How many days are there in a week?", "7"),
    ("How many sides does a hexagon have?", "6"),
    ("How many minutes are there in an hour?", "60"),
    ("How many hours are there in a day?", "24"),
    ("At what temperature in degrees Celsius does water freeze?", "0"),
]


def facts() -> list[dict]:
    """Every fact question, in a fixed order (the splits take alternate positions)."""
    out = []
    for i, (country, capital) in enumerate(CAPITALS):
        prompt = CAPITAL_PHRASINGS[i % len(CAPITAL_PHRASINGS)].format(country=country)
        out.append({"prompt": prompt, "reference": capital, "match": "exact"})
    for question, reference in OTHER_FACTS:
        match = "numeric" if reference.isdigit() else "exact"
        out.append({"prompt": question, "reference": reference, "match": match})
    return out


def _in_split(index: int, split: str) -> bool:
    return split == "all" or (index % 2 == 0) == (split == "fit")


def _check(n: int, split: str) -> None:
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")


def generate_facts(n: int, seed: int = 0, split: str = "all") -> list[dict]:
    """`n` fact questions of the split in a seeded order (cycling through the split when n is larger)."""
    _check(n, split)
    pool = [f for i, f in enumerate(facts()) if _in_split(i, split)]
    random.Random(seed).shuffle(pool)
    return [dict(pool[i % len(pool)]) for i in range(n)]


PHRASINGS = {
    "*": [
        "What is {a} times {b}?",
        "What is {a} multiplied by {b}?",
        "Compute {a}*{b}",
        "What is the product of {a} and {b}?",
        "Multiply {a} by {b}.",
        "How much is {a} x {b}?",
    ],
    "+": [
        "What is {a} plus {b}?",
        "What is the sum of {a} and {b}?",
        "Add {a} and {b}.",
        "Calculate {a} + {b}.",
        "How much is {a} plus {b}?",
    ],
    "-": ["What is {a} minus {b}?", "Subtract {b} from {a}.", "Compute {a} - {b}"],
}


def _arithmetic_hash(prompt: str) -> int:
    return int(hashlib.sha256(prompt.encode()).hexdigest(), 16)


def generate_phrasings(n: int, seed: int = 0, split: str = "all") -> list[dict]:
    """Arithmetic in several phrasings: products of 2..12 (half), sums and differences of two-digit numbers."""
    _check(n, split)
    rng = random.Random(seed)
    items: list[dict] = []
    while len(items) < n:
        op = "*" if len(items) % 2 == 0 else rng.choice("+-")
        if op == "*":
            a, b = rng.randint(2, 12), rng.randint(2, 12)
        else:
            a, b = sorted((rng.randint(10, 99), rng.randint(10, 99)), reverse=op == "-")
        prompt = rng.choice(PHRASINGS[op]).format(a=a, b=b)
        if not _in_split(_arithmetic_hash(prompt), split):
            continue
        value = a * b if op == "*" else a + b if op == "+" else a - b
        items.append({"prompt": prompt, "reference": str(value), "match": "numeric"})
    return items


def generate_easy(n: int, seed: int = 0, split: str = "all") -> list[dict]:
    """Arithmetic in several phrasings and short facts, alternated (the arithmetic first)."""
    _check(n, split)
    arithmetic = generate_phrasings((n + 1) // 2, seed, split)
    known = generate_facts(max(n // 2, 1), seed, split)
    mixed = [q for pair in zip(arithmetic, known) for q in pair] + arithmetic[len(known) :]
    return mixed[:n]
