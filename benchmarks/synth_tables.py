"""Generate realistic synthetic outcome tables (CSV) for developing and stress-testing the router.

    .venv/bin/python benchmarks/synth_tables.py --seed 1 --rows 3000 --out /tmp/synth/seed1.csv
    .venv/bin/python benchmarks/synth_tables.py --seed 7 --models 8 --graded --out /tmp/synth/g7.csv

What it writes: the outcome-table format of ``../shared/data/outcomes/README.md`` (``prompt``, ``category``,
then ``score:/cost:/tokens:<model>`` per model), loadable with ``fusiongraph.eval.tables.load_table``.

How:

* Prompts: 12 topics (algebra word problems, python coding, organic chemistry, european history,
  contract law, poetry writing, translation to french, medical diagnosis, physics, geography trivia,
  sql, summarising), each with several templates filled from vocabulary lists (names, numbers, items),
  optional easy/hard modifiers, and ~35% long prompts that prepend a topic-specific context paragraph.
* Difficulty: per prompt, a latent difficulty shared by every model (so errors correlate) = topic
  level + template level + modifier + long-prompt effect + N(0, 1.2), plus ~9% "trap" prompts that
  almost every model fails (so the oracle stays below 1); part of it is visible in the text.
* Models: 12 real models at real USD list prices per 1M input/output tokens. Each has a general skill
  (roughly rising with price, with exceptions), per-topic offsets (cheap specialists, expensive models
  with a weak topic), a difficulty sensitivity, a long-prompt sensitivity, a noise level and a
  verbosity. P(correct) = sigmoid(skill + topic_offset + long_effect - hardness * difficulty + noise);
  score ~ Bernoulli(P) (or a Beta around P with ``--graded``). Output tokens are lognormal around the
  model's mean (scaled per topic, longer for long prompts).
* Cost (USD) = (len(prompt)/4 + 150) * price_in/1e6 + tokens * price_out/1e6.
* ``--seed`` perturbs the model skills and topic offsets (and plants one surprise specialist and one
  surprise weakness) and draws new prompts, so different seeds give genuinely different tables.
  numpy + stdlib only; deterministic for a given seed.
"""

from __future__ import annotations

import argparse
import csv
import random
import string
from pathlib import Path

import numpy as np

# --------------------------------------------------------------------------------------------------
# models: name -> (price_in, price_out USD per 1M tokens, base skill, hardness, long-prompt effect,
#                  noise sd, mean output tokens)
# --------------------------------------------------------------------------------------------------
MODELS = {
    "claude-3-opus": (15.0, 75.0, 1.95, 0.85, 0.10, 1.00, 330),
    "claude-3.5-sonnet": (3.0, 15.0, 2.20, 0.80, 0.15, 0.95, 300),
    "gpt-4o": (2.5, 10.0, 2.10, 0.80, 0.10, 0.95, 280),
    "gemini-1.5-pro": (1.25, 5.0, 1.85, 0.85, 0.20, 1.00, 320),
    "mistral-large": (2.0, 6.0, 1.45, 0.90, 0.00, 1.05, 260),
    "qwen2-72b": (0.9, 0.9, 1.45, 0.90, -0.05, 1.05, 270),
    "llama-3.1-70b": (0.88, 0.88, 1.40, 0.90, -0.05, 1.05, 250),
    "gpt-4o-mini": (0.15, 0.6, 1.25, 0.95, -0.10, 1.05, 240),
    "claude-3-haiku": (0.25, 1.25, 0.95, 1.00, -0.10, 1.10, 200),
    "gemini-1.5-flash": (0.075, 0.3, 1.00, 1.00, -0.15, 1.10, 220),
    "deepseek-v2": (0.14, 0.28, 1.00, 1.00, -0.20, 1.10, 300),
    "llama-3.1-8b": (0.18, 0.18, 0.85, 1.05, -0.35, 1.15, 230),
}

TOPICS = [
    "algebra",
    "python",
    "organic_chemistry",
    "european_history",
    "contract_law",
    "poetry",
    "french_translation",
    "medical_diagnosis",
    "physics",
    "geography",
    "sql",
    "summarising",
]

# topic -> (mean difficulty, output-length factor)
TOPIC_LEVEL = {
    "algebra": (0.35, 0.9),
    "python": (0.30, 1.6),
    "organic_chemistry": (0.45, 1.0),
    "european_history": (-0.10, 1.0),
    "contract_law": (0.35, 1.2),
    "poetry": (-0.05, 0.8),
    "french_translation": (-0.20, 0.5),
    "medical_diagnosis": (0.40, 1.0),
    "physics": (0.40, 1.0),
    "geography": (-0.40, 0.35),
    "sql": (0.10, 0.9),
    "summarising": (-0.25, 0.7),
}

# archetypal per-topic offsets (the seed adds noise and a couple of surprises on top)
ARCHETYPES = {
    "claude-3-opus": {"algebra": -0.9, "physics": -0.3, "poetry": 0.5, "contract_law": 0.3},
    "claude-3.5-sonnet": {"python": 0.6, "sql": 0.3, "poetry": 0.3, "algebra": -0.2},
    "gpt-4o": {"poetry": -0.5, "algebra": 0.2, "physics": 0.2},
    "gemini-1.5-pro": {"geography": 0.5, "medical_diagnosis": 0.4, "summarising": 0.3, "sql": -0.4},
    "mistral-large": {"french_translation": 1.1, "european_history": 0.4, "python": -0.2},
    "qwen2-72b": {"algebra": 0.8, "physics": 0.4, "poetry": -0.5, "contract_law": -0.3},
    "llama-3.1-70b": {"european_history": 0.4, "contract_law": 0.3, "summarising": 0.2},
    "gpt-4o-mini": {"sql": 0.4, "geography": 0.2, "organic_chemistry": -0.2},
    "claude-3-haiku": {"summarising": 0.8, "poetry": 0.6, "algebra": -0.5},
    "gemini-1.5-flash": {"geography": 0.7, "summarising": 0.4, "french_translation": 0.3},
    "deepseek-v2": {"python": 1.3, "sql": 1.0, "algebra": 0.4, "poetry": -0.6, "french_translation": -0.4},
    "llama-3.1-8b": {"poetry": 0.3, "medical_diagnosis": -0.6, "organic_chemistry": -0.4},
}

# --------------------------------------------------------------------------------------------------
# prompt text
# --------------------------------------------------------------------------------------------------
NAMES = [
    "Alice",
    "Bob",
    "Carlos",
    "Dana",
    "Elena",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jamal",
    "Kira",
    "Liam",
    "Maya",
    "Noah",
    "Olga",
    "Priya",
    "Quentin",
    "Rosa",
    "Sam",
    "Tariq",
    "Uma",
    "Victor",
    "Wen",
    "Yusuf",
    "Zoe",
]


def _num(lo, hi):
    return lambda r: str(r.randint(lo, hi))


def _price(lo, hi):
    return lambda r: f"{r.uniform(lo, hi):.2f}"


COMMON = {
    "name": NAMES,
    "name2": NAMES,
    "n1": _num(2, 40),
    "n2": _num(3, 90),
    "n3": _num(100, 999),
    "year": _num(1450, 1950),
}

# topic -> dict(templates=[(text, difficulty)], vocab={slot: list|callable}, context=[sentences],
#               easy=[suffix], hard=[suffix])
T: dict[str, dict] = {}

T["algebra"] = dict(
    templates=[
        ("{name} buys {n1} {item}s at ${p1} each and pays with a ${bill} bill. How much change does {name} get?", -0.8),
        (
            "A train leaves the station at {n2} km/h and a second train follows {n1} minutes later at {n3} km/h. "
            "After how many hours does the second train catch up with the first?",
            0.4,
        ),
        (
            "{name} is {n1} years older than {name2}. In {n2} years the sum of their ages will be {n3}. How old is {name} now?",
            0.0,
        ),
        ("The sum of two numbers is {n3} and their difference is {n2}. Find the two numbers.", -0.4),
        (
            "A rectangle's length is {n1} cm more than twice its width, and its perimeter is {n3} cm. "
            "Find the length and the width of the rectangle.",
            0.1,
        ),
        ("Solve the system of equations: {a}x + {b}y = {n3} and {b}x - {a}y = {n2}. Give exact fractions.", 0.7),
        (
            "A tank is filled by pipe A in {n1} hours and by pipe B in {n2} hours, while pipe C drains it in {n3} hours. "
            "If all three are open, how long does it take to fill the tank?",
            0.9,
        ),
        (
            "{name} invests ${n3} at {rate}% compound interest per year. How many whole years until the investment doubles?",
            0.5,
        ),
    ],
    vocab={
        "item": ["notebook", "apple", "pencil", "ticket", "sandwich", "marble", "candle", "towel", "mug"],
        "p1": _price(0.5, 9),
        "bill": ["20", "50", "100"],
        "a": _num(2, 9),
        "b": _num(2, 9),
        "rate": _num(2, 12),
    },
    context=[
        "I am tutoring a middle school student who struggles with word problems.",
        "Our textbook chapter this week covers linear equations and systems of equations.",
        "The teacher wants every algebra step written out, with the equation set up from the story.",
        "Last time I tried this kind of problem I mixed up which quantity was the unknown variable.",
        "Please define the variables clearly before solving the equations.",
        "We are allowed to use a calculator but not a computer algebra system.",
    ],
    easy=["Just give the final number.", "Keep the explanation short."],
    hard=[
        "Show every algebraic step and verify the answer by substitution.",
        "Also prove that the solution is unique.",
        "Generalise the answer to arbitrary values of the parameters.",
    ],
)

T["python"] = dict(
    templates=[
        (
            "Write a Python function that returns the {n1} most common words in a text file, ignoring case and punctuation.",
            -0.2,
        ),
        ("How do I reverse a list in Python without using the built-in reverse method?", -1.0),
        ("Write a Python class `{cls}` with methods to add, remove and look up items in O(1) average time.", 0.2),
        ("My Python script raises `{err}` on the line `{line}`. What is wrong and how do I fix it?", -0.1),
        ("Implement {algo} in Python with type hints and docstrings, and write pytest unit tests for it.", 0.6),
        (
            "Write an async Python function using asyncio and aiohttp that downloads {n2} URLs concurrently with at most {n1} "
            "requests in flight, retrying failures with exponential backoff.",
            1.0,
        ),
        (
            "Refactor this Python loop into a list comprehension: `result = []` then `for x in {var}: if x % {n1} == 0: result.append(x * 2)`",
            -0.7,
        ),
        ("Explain the difference between a Python generator and an iterator, with a code example using `yield`.", -0.3),
    ],
    vocab={
        "cls": ["LRUCache", "Inventory", "PhoneBook", "TaskQueue", "RateLimiter", "SparseVector"],
        "err": [
            "KeyError: 'id'",
            "TypeError: 'NoneType' object is not subscriptable",
            "IndexError: list index out of range",
            "AttributeError: 'str' object has no attribute 'append'",
            "ValueError: too many values to unpack",
        ],
        "line": [
            "for k, v in data:",
            "row = rows[i + 1]",
            "name.append(suffix)",
            "total += record['id']",
            "item = cache.get(key)[0]",
        ],
        "algo": [
            "Dijkstra's shortest path algorithm",
            "a trie with prefix search",
            "merge sort",
            "a union-find structure",
            "binary search on a rotated sorted array",
            "a min-heap priority queue",
            "topological sort",
        ],
        "var": ["numbers", "values", "scores", "ids"],
    },
    context=[
        "I'm working on a Flask web application that runs on Python 3.11.",
        "The code base uses pandas and numpy heavily, and we run the tests with pytest.",
        "Performance matters because the function is called on millions of records per day.",
        "Please follow PEP 8 and avoid third-party dependencies where the standard library suffices.",
        "Here is some background: the data comes from a CSV export and the fields are sometimes missing.",
        "I am a beginner programmer, so please comment the Python code.",
    ],
    easy=["A short snippet is enough.", "No need for tests."],
    hard=[
        "Handle every edge case, including empty input and unicode, and state the time complexity.",
        "Make it thread-safe and explain why.",
        "It must run in O(n log n) time and O(1) extra memory.",
    ],
)

T["organic_chemistry"] = dict(
    templates=[
        ("What is the major product when {compound} reacts with {reagent}? Explain the mechanism.", 0.3),
        ("Draw the mechanism of the {reaction} and explain the role of each intermediate.", 0.5),
        ("Name this compound using IUPAC rules: a {n1}-carbon chain with a {group} on carbon {c}.", -0.2),
        ("Why is {compound} more acidic than {compound2}? Discuss resonance and inductive effects.", 0.2),
        ("Propose a multi-step organic synthesis of {target} starting from {compound}.", 1.0),
        ("How many stereoisomers does {compound} have, and which of them are chiral?", 0.4),
        (
            "Which functional group gives a broad IR absorption around 3300 cm^-1, and how do you tell it apart from an amine?",
            -0.6,
        ),
    ],
    vocab={
        "compound": [
            "2-butanol",
            "benzaldehyde",
            "cyclohexene",
            "acetophenone",
            "phenol",
            "tert-butyl bromide",
            "propanoic acid",
            "toluene",
            "1-bromopropane",
            "ethyl acetate",
        ],
        "compound2": ["ethanol", "water", "cyclohexanol", "acetic acid", "methanol"],
        "reagent": [
            "HBr and peroxides",
            "NaBH4",
            "KMnO4 under heat",
            "LiAlH4 then water",
            "ozone then zinc",
            "sodium ethoxide in ethanol",
            "Br2 with FeBr3",
        ],
        "reaction": [
            "Diels-Alder reaction",
            "aldol condensation",
            "SN2 substitution",
            "E1 elimination",
            "Grignard addition to a ketone",
            "Friedel-Crafts acylation",
            "Wittig reaction",
        ],
        "group": ["hydroxyl group", "methyl branch", "carbonyl group", "bromine atom", "double bond"],
        "c": _num(2, 5),
        "target": ["ibuprofen", "aspirin", "2-methyl-2-hexanol", "benzocaine", "cyclohexanone oxime"],
    },
    context=[
        "I'm studying for my organic chemistry II final exam.",
        "Our professor emphasises arrow-pushing mechanisms and stereochemistry.",
        "We covered carbocation rearrangements and Markovnikov's rule last week.",
        "The lab report asks us to justify the regioselectivity of the reaction.",
        "Please mention any side products and the reaction conditions (solvent, temperature).",
    ],
    easy=["A brief answer is fine.", "Just name the product."],
    hard=[
        "Include stereochemistry and explain the kinetic versus thermodynamic control.",
        "Justify every step with pKa values and orbital arguments.",
    ],
)

T["european_history"] = dict(
    templates=[
        ("What were the main causes of the {event}?", -0.4),
        ("Compare the political consequences of the {event} and the {event2} for European states.", 0.6),
        ("Who was {figure} and why were they important in European history?", -0.7),
        ("Explain how the {treaty} reshaped the balance of power in Europe.", 0.2),
        ("Write an essay arguing whether the {event} was inevitable, using primary sources from around {year}.", 1.0),
        ("In which year did the {event} begin, and which monarchs or leaders were involved?", -0.3),
    ],
    vocab={
        "event": [
            "French Revolution",
            "Thirty Years' War",
            "Protestant Reformation",
            "Napoleonic Wars",
            "unification of Germany",
            "Congress of Vienna",
            "Russian Revolution of 1917",
            "Hundred Years' War",
            "Glorious Revolution",
            "revolutions of 1848",
            "fall of the Berlin Wall",
        ],
        "event2": ["Industrial Revolution", "Crimean War", "First World War", "Spanish Civil War", "Renaissance"],
        "figure": [
            "Otto von Bismarck",
            "Catherine the Great",
            "Charlemagne",
            "Cardinal Richelieu",
            "Maria Theresa",
            "Martin Luther",
            "Giuseppe Garibaldi",
            "Elizabeth I",
            "Klemens von Metternich",
        ],
        "treaty": [
            "Peace of Westphalia",
            "Treaty of Versailles",
            "Treaty of Utrecht",
            "Treaty of Tordesillas",
            "Treaty of Rome",
            "Congress of Berlin",
        ],
    },
    context=[
        "I'm writing a history essay for my university seminar on early modern and modern Europe.",
        "My lecturer wants us to weigh economic, religious and dynastic factors.",
        "Historians disagree about this, so please present more than one historiographical view.",
        "The essay has to be around two thousand words and cite sources such as Hobsbawm or Kennedy.",
        "We have been reading about the monarchies, empires and nation states of the nineteenth century.",
    ],
    easy=["Keep it to a few sentences.", "Just the key facts please."],
    hard=[
        "Discuss the historiographical debate and cite specific dates and primary sources.",
        "Assess long-term and short-term causes critically.",
    ],
)

T["contract_law"] = dict(
    templates=[
        ("Is a verbal agreement to {deal} legally binding under {law}?", -0.2),
        (
            "{name} signed a contract to {deal} but the other party failed to deliver by the deadline. What remedies are available for breach of contract?",
            0.2,
        ),
        (
            "Explain the difference between a condition and a warranty in contract law, with an example involving {deal}.",
            0.0,
        ),
        ("Draft a limitation of liability clause for a software licence agreement capped at ${n3},000.", 0.6),
        ("Does the doctrine of {doctrine} apply when {name} cannot perform the contract because of {event}?", 0.8),
        ("What are the essential elements of a valid contract: offer, acceptance, consideration and what else?", -0.8),
        (
            "My landlord kept my ${n3} deposit claiming damage to the flat. Was this a breach of the lease contract?",
            0.1,
        ),
    ],
    vocab={
        "deal": [
            "sell a used car",
            "lease an office",
            "supply 500 laptops",
            "renovate a kitchen",
            "license a software product",
            "buy a house",
            "provide consulting services",
        ],
        "law": ["English common law", "the Uniform Commercial Code", "New York law", "California law"],
        "doctrine": [
            "frustration",
            "force majeure",
            "promissory estoppel",
            "impossibility of performance",
            "unconscionability",
        ],
        "event": [
            "a pandemic lockdown",
            "a factory fire",
            "new export sanctions",
            "a supplier's bankruptcy",
            "a flood",
        ],
    },
    context=[
        "I run a small business and we do not have in-house legal counsel.",
        "The contract contains an arbitration clause and a choice of law clause.",
        "The agreement was signed electronically and the parties exchanged several emails afterwards.",
        "I understand this is not legal advice; I just want to understand the legal principles involved.",
        "The counterparty claims the liquidated damages clause is an unenforceable penalty.",
    ],
    easy=["A short overview is enough.", "Answer yes or no with one reason."],
    hard=[
        "Cite the leading case law and distinguish contrary precedents.",
        "Analyse the enforceability of each clause under both common law and civil law systems.",
    ],
)

T["poetry"] = dict(
    templates=[
        ("Write a haiku about {theme}.", -0.9),
        ("Write a sonnet in iambic pentameter about {theme}, with the rhyme scheme ABAB CDCD EFEF GG.", 0.7),
        ("Compose a short rhyming poem for {name}'s {occasion}.", -0.5),
        ("Write a free verse poem about {theme} in the style of {poet}.", 0.2),
        ("Write a villanelle about {theme}; keep the two refrains exact.", 1.0),
        ("Write a limerick about a {animal} who loves {hobby}.", -0.4),
    ],
    vocab={
        "theme": [
            "autumn leaves",
            "the ocean at night",
            "lost love",
            "a city waking up",
            "grief and memory",
            "the first snow",
            "a grandmother's kitchen",
            "time passing",
            "a lighthouse",
            "spring rain",
        ],
        "occasion": ["birthday", "retirement party", "wedding", "graduation", "farewell dinner"],
        "poet": ["Emily Dickinson", "Pablo Neruda", "Walt Whitman", "Mary Oliver", "Sylvia Plath", "Rumi"],
        "animal": ["cat", "walrus", "penguin", "goat", "parrot", "badger"],
        "hobby": ["baking bread", "jazz", "chess", "surfing", "knitting"],
    },
    context=[
        "I'd like to read this poem aloud at a family gathering.",
        "The mood should be gentle and melancholic, with vivid imagery and metaphor.",
        "Please avoid cliches like hearts and roses; surprise me with the imagery.",
        "It is for a creative writing workshop where we study meter, rhyme and stanza forms.",
        "I love poems with strong sensory details and a twist in the final line.",
    ],
    easy=["Keep it short.", "Any form is fine."],
    hard=["Every line must scan perfectly; mark the stressed syllables.", "Use an acrostic that spells the theme."],
)

T["french_translation"] = dict(
    templates=[
        ('Translate into French: "{sentence}"', -0.6),
        ('How do you say "{sentence}" in French, formally and informally?', -0.1),
        ('Translate this paragraph into natural, idiomatic French: "{sentence} {sentence2}"', 0.3),
        (
            'Translate the idiom "{idiom}" into French with an equivalent French expression, not a literal translation.',
            0.7,
        ),
        ('Translate into French and keep the subjunctive where required: "{subj}"', 0.8),
    ],
    vocab={
        "sentence": [
            "Where is the nearest train station?",
            "I would like to book a table for four people tonight.",
            "The meeting has been moved to Thursday afternoon.",
            "My brother lives in a small village near the sea.",
            "Could you please send me the invoice by email?",
            "We have been waiting for the bus for twenty minutes.",
            "The museum is closed on Mondays.",
            "I forgot my umbrella at the office.",
        ],
        "sentence2": [
            "Thank you for your patience.",
            "Let me know if you have any questions.",
            "The weather was wonderful all week.",
            "We will arrive late because of the traffic.",
        ],
        "idiom": [
            "it's raining cats and dogs",
            "break a leg",
            "the ball is in your court",
            "to kill two birds with one stone",
            "once in a blue moon",
            "to let the cat out of the bag",
        ],
        "subj": [
            "I want you to come with us even though it is late.",
            "It is necessary that they finish before noon.",
            "Although she is tired, she keeps working.",
            "I doubt that he knows the answer.",
        ],
    },
    context=[
        "I'm preparing an email to a French client and want to sound polite and professional.",
        "The translation will be read by native speakers in Paris, so please use natural French.",
        "Please keep the tone and register of the English original in the French version.",
        "I'm learning French at the B1 level, so please also explain the grammar you used.",
        "This text is for a French menu and a tourist brochure.",
    ],
    easy=["Only the French translation please.", "A literal translation is fine."],
    hard=[
        "Explain every choice of tense, gender agreement and register.",
        "Give translations for both France and Quebec French and explain the differences.",
    ],
)

T["medical_diagnosis"] = dict(
    templates=[
        ("A {age}-year-old patient presents with {symptom} and {symptom2}. What is the most likely diagnosis?", 0.2),
        ("What is the differential diagnosis for {symptom} in a {age}-year-old {sex}?", 0.4),
        ("A patient with {condition} has {symptom}; which lab tests or imaging would you order next?", 0.5),
        ("What are the typical symptoms of {condition}, and how is it diagnosed?", -0.6),
        (
            "A {age}-year-old {sex} has {symptom}, {symptom2} and a history of {condition}. Lab results show {lab}. "
            "Give the diagnosis and the first-line treatment.",
            1.0,
        ),
    ],
    vocab={
        "age": _num(4, 88),
        "sex": ["man", "woman"],
        "symptom": [
            "chest pain radiating to the left arm",
            "a persistent dry cough",
            "sudden severe headache",
            "fever and a stiff neck",
            "painless jaundice",
            "shortness of breath on exertion",
            "right lower quadrant abdominal pain",
            "fatigue and weight gain",
            "blurred vision",
        ],
        "symptom2": [
            "night sweats",
            "swollen ankles",
            "joint pain",
            "excessive thirst",
            "a rash on the cheeks",
            "weight loss",
            "palpitations",
            "nausea and vomiting",
        ],
        "condition": [
            "type 2 diabetes",
            "hypertension",
            "asthma",
            "rheumatoid arthritis",
            "chronic kidney disease",
            "hypothyroidism",
            "atrial fibrillation",
            "COPD",
        ],
        "lab": [
            "elevated troponin",
            "low TSH and high free T4",
            "HbA1c of 9.1%",
            "elevated ALT and bilirubin",
            "a white cell count of 18,000",
            "low hemoglobin and low ferritin",
        ],
    },
    context=[
        "I am a third-year medical student preparing for the USMLE Step 2 exam.",
        "The patient's vital signs: blood pressure 150/95, heart rate 104, temperature 38.4 C.",
        "The patient takes metformin and lisinopril and has no known drug allergies.",
        "Physical examination is otherwise unremarkable; the ECG shows sinus tachycardia.",
        "The family history includes early coronary artery disease and breast cancer.",
    ],
    easy=["Just name the most likely diagnosis.", "One line is enough."],
    hard=[
        "Rank the differential diagnoses by likelihood and justify each with pathophysiology.",
        "Include the evidence-based guideline recommendations and drug dosages.",
    ],
)

T["physics"] = dict(
    templates=[
        (
            "A ball is thrown upward at {n1} m/s from a height of {n2} m. How long until it hits the ground? Use g = 9.8 m/s^2.",
            0.0,
        ),
        ("A {n2} kg block slides down a frictionless incline of {angle} degrees. What is its acceleration?", -0.4),
        ("Explain {concept} in simple terms with an everyday example.", -0.7),
        (
            "A circuit has a {n1} ohm resistor in series with two {n2} ohm resistors in parallel, driven by a {volt} V battery. "
            "Find the current through each resistor.",
            0.3,
        ),
        (
            "Derive the period of a simple pendulum of length {n1} cm for small oscillations, and estimate the error at {angle} degrees amplitude.",
            0.9,
        ),
        ("A satellite orbits Earth at an altitude of {n3} km. Compute its orbital speed and period.", 0.5),
        (
            "A {n1} kg cart moving at {n2} m/s collides elastically with a stationary {n3} g cart. Find both final velocities.",
            0.4,
        ),
    ],
    vocab={
        "angle": _num(10, 60),
        "volt": ["9", "12", "24", "5"],
        "concept": [
            "quantum entanglement",
            "the Doppler effect",
            "Newton's third law",
            "entropy",
            "special relativity and time dilation",
            "electromagnetic induction",
            "buoyancy",
            "momentum conservation",
        ],
    },
    context=[
        "This is for my first-year university physics course on mechanics and electromagnetism.",
        "Please state which physical laws and conservation principles you use.",
        "Ignore air resistance unless it changes the answer significantly.",
        "Give the final answer with SI units and three significant figures.",
        "My lab partner and I got different answers to this problem, so please explain carefully.",
    ],
    easy=["Just the numerical answer.", "A rough estimate is fine."],
    hard=[
        "Include air resistance proportional to v^2 and solve numerically.",
        "Derive the result from the Lagrangian and discuss its limits of validity.",
    ],
)

T["geography"] = dict(
    templates=[
        ("What is the capital of {country}?", -1.2),
        ("Which river flows through {city}?", -0.5),
        ("Name the countries that border {country}.", -0.1),
        ("What is the highest mountain in {region}, and how tall is it?", -0.3),
        ("Which is larger by area, {country} or {country2}?", -0.2),
        ("What is the approximate population of {city}, and what language do most people speak there?", 0.1),
        ("List the {n1} longest rivers in {region} in order of length.", 0.7),
    ],
    vocab={
        "country": [
            "Kazakhstan",
            "Peru",
            "Mongolia",
            "Australia",
            "Nigeria",
            "Canada",
            "Bhutan",
            "Uruguay",
            "Slovenia",
            "Madagascar",
            "Vietnam",
            "Norway",
            "Chile",
            "Ethiopia",
            "Laos",
        ],
        "country2": ["Argentina", "Algeria", "Indonesia", "Mexico", "Iran", "Sudan", "Bolivia", "Pakistan"],
        "city": [
            "Budapest",
            "Cairo",
            "Baghdad",
            "Vienna",
            "Shanghai",
            "Bangkok",
            "Montreal",
            "Lyon",
            "Kinshasa",
            "Belgrade",
            "Khartoum",
            "Seville",
        ],
        "region": ["Africa", "South America", "Europe", "Southeast Asia", "Oceania", "Central Asia", "Scandinavia"],
    },
    context=[
        "We're having a pub quiz night and I want to double-check the geography answers.",
        "My daughter is studying world capitals, rivers and mountain ranges for a school test.",
        "I'm planning a backpacking trip and want to learn about the countries and cities on the route.",
        "Our atlas is a bit old, so borders and city populations may have changed.",
    ],
    easy=["One word answer.", "Just the name."],
    hard=["Give precise figures with sources and note any disputed borders.", "Rank them and give exact numbers."],
)

T["sql"] = dict(
    templates=[
        ("Write a SQL query to find the top {n1} {entity}s by total {metric} from the `{table}` table.", -0.2),
        (
            "Write a SQL query that joins `{table}` and `{table2}` and returns each {entity} with their most recent {metric}.",
            0.4,
        ),
        ("What is the difference between INNER JOIN and LEFT JOIN in SQL? Show an example with `{table}`.", -0.7),
        (
            "Write a PostgreSQL query using a window function to compute a {n1}-day moving average of {metric} per {entity}.",
            0.7,
        ),
        (
            "My SQL query `SELECT {entity}_id, COUNT(*) FROM {table} WHERE {metric} > {n3}` fails with a GROUP BY error. Fix it.",
            -0.3,
        ),
        ("Write a recursive CTE in SQL that returns the full management chain for an employee in `{table2}`.", 0.9),
        ("How should I index the `{table}` table to speed up queries filtering on {metric} and date?", 0.3),
    ],
    vocab={
        "entity": ["customer", "product", "employee", "store", "supplier", "user"],
        "metric": ["revenue", "order amount", "salary", "quantity sold", "login count", "spend"],
        "table": ["orders", "sales", "transactions", "invoices", "events"],
        "table2": ["customers", "employees", "products", "stores", "accounts"],
    },
    context=[
        "We use PostgreSQL 15 and the orders table has about 50 million rows.",
        "The schema: orders(id, customer_id, amount, created_at), customers(id, name, country).",
        "The query runs in a nightly reporting job and currently takes over an hour.",
        "I am a data analyst and mostly write SELECT queries for dashboards.",
        "Please make the SQL compatible with both MySQL and PostgreSQL if possible.",
    ],
    easy=["Just the query.", "A simple query is fine."],
    hard=[
        "Handle ties and NULL values correctly and explain the query plan.",
        "Make it efficient on billions of rows and justify the indexes.",
    ],
)

T["summarising"] = dict(
    templates=[
        ('Summarise the following article in {n1} bullet points: "{passage}"', -0.3),
        ('Write a one-sentence summary of this text: "{passage}"', -0.6),
        ('Summarize the key findings and limitations of this study abstract: "{passage}"', 0.3),
        ('Give me a TL;DR of this email thread for my manager: "{passage}"', -0.2),
        (
            'Summarise this report for a non-expert audience in under {n2} words, preserving all the numbers: "{passage}"',
            0.6,
        ),
    ],
    vocab={
        "passage": [
            "The city council voted on Tuesday to expand the bike lane network by 40 kilometres over three years, citing a rise in cycling commuters and a drop in traffic injuries.",
            "Researchers found that participants who slept less than six hours a night performed worse on memory tests, although the effect disappeared after two nights of recovery sleep.",
            "Quarterly revenue rose 12 percent to 4.2 billion dollars, driven by cloud services, while hardware sales declined and the company cut its full-year forecast.",
            "The new drought-resistant wheat variety yielded 18 percent more grain in field trials across five countries, but farmers raised concerns about seed prices.",
            "Hi team, the product launch is postponed by two weeks because the payment integration failed QA; marketing should pause the campaign and support should update the FAQ.",
            "A survey of 2,000 remote workers found that most preferred a hybrid schedule, citing fewer commutes, although younger employees reported feeling isolated.",
            "The museum's restoration project uncovered a hidden sketch beneath the painting, which experts now date to the artist's early period in Florence.",
        ]
    },
    context=[
        "I need to paste the summary into our weekly newsletter.",
        "My manager only reads the first two lines of anything I send, so the main point must come first.",
        "Please keep a neutral tone and do not add information that is not in the original text.",
        "The original document is much longer; this excerpt is the most important section.",
        "The audience is busy executives who want the key takeaway and the decision needed.",
    ],
    easy=["Keep it very brief.", "Any short summary is fine."],
    hard=[
        "Preserve every figure exactly and flag any claims that are not supported by the text.",
        "Produce both an executive summary and a detailed summary with section headings.",
    ],
)

# global calibration: spread of the shared latent difficulty, scale of per-model noise, skill shift, share of trap prompts
LATENT_SD, NOISE_SCALE, SKILL_SHIFT, TRAP_P = 1.2, 0.7, 0.4, 0.09

GENERIC_OPENERS = ["", "", "", "Hi! ", "Quick question: ", "Please help. ", "Hello! ", "Can you help me? "]


def _fill(text: str, vocab: dict, r: random.Random) -> str:
    values = {}
    for _, field, _, _ in string.Formatter().parse(text):
        if field and field not in values:
            src = vocab.get(field, COMMON.get(field))
            if src is None:
                raise KeyError(f"no vocabulary for slot {field!r}")
            values[field] = src(r) if callable(src) else r.choice(src)
    if "name" in values and "name2" in values and values["name2"] == values["name"]:
        values["name2"] = r.choice([n for n in NAMES if n != values["name"]])
    return text.format(**values)


def make_prompt(topic: str, r: random.Random) -> tuple[str, float, bool]:
    """One prompt of ``topic``: (text, visible difficulty, is_long)."""
    spec = T[topic]
    tmpl, diff = r.choice(spec["templates"])
    body = _fill(tmpl, spec["vocab"], r)
    u = r.random()
    if u < 0.2:
        body += " " + r.choice(spec["easy"])
        diff -= 0.5
    elif u < 0.4:
        body += " " + r.choice(spec["hard"])
        diff += 0.7
    is_long = r.random() < 0.35
    if is_long:
        sentences = r.sample(spec["context"], k=min(len(spec["context"]), r.randint(2, 5)))
        body = " ".join(sentences) + ("\n\n" if r.random() < 0.5 else " ") + body
    return r.choice(GENERIC_OPENERS) + body, diff, is_long


# --------------------------------------------------------------------------------------------------
# generation
# --------------------------------------------------------------------------------------------------
def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def success(skill, offset, long_eff, is_long, hard, d, noise):
    """P(correct) of each model (broadcast): the one formula the generator draws from and synth_bound.py
    takes expectations of."""
    return _sigmoid(skill + offset + long_eff * is_long - hard * d + noise)


def mean_tokens(verbosity, length_factor, is_long, d):
    """The median of a model's output tokens (lognormal, sd TOKEN_SD of its log) for a row (broadcast)."""
    return verbosity * length_factor * np.where(is_long, 1.5, 1.0) * np.exp(0.15 * d)


TOKEN_SD = 0.45


def hidden_difficulty(n: int, rng: np.random.Generator) -> np.ndarray:
    """The part of each prompt's difficulty its text does not show: N(0, LATENT_SD), plus a few "trap"
    prompts (ambiguous, misleading or mislabelled) that almost every model gets wrong."""
    latent = rng.normal(0, LATENT_SD, n)
    return latent + (rng.random(n) < TRAP_P) * rng.uniform(3.0, 7.0, n)


def cost_usd(prompt_tokens, tokens, price_in, price_out):
    """A call's USD cost (broadcast): the prompt plus a 150-token system preamble in, the answer out."""
    return (prompt_tokens + 150) * price_in / 1e6 + tokens * price_out / 1e6


def pick_models(k: int, rng: np.random.Generator) -> list[str]:
    names = list(MODELS)
    if k >= len(names):
        return names
    by_price = sorted(names, key=lambda m: MODELS[m][0] + MODELS[m][1])
    keep = {by_price[0], by_price[-1]}  # always the cheapest and the priciest
    rest = [m for m in names if m not in keep]
    keep |= set(rng.choice(rest, size=max(0, k - 2), replace=False).tolist())
    return [m for m in names if m in keep]


def generate(seed: int, rows: int = 3000, n_models: int | None = None, graded: bool = False) -> dict:
    rng = np.random.default_rng(seed)
    r = random.Random(seed * 7919 + 17)
    models = pick_models(n_models or len(MODELS), rng)
    m, nt = len(models), len(TOPICS)

    # model parameters, perturbed by the seed
    skill = np.array([MODELS[x][2] for x in models]) + SKILL_SHIFT + rng.normal(0, 0.25, m)
    hard = np.array([MODELS[x][3] for x in models]) * rng.uniform(0.85, 1.15, m)
    long_eff = np.array([MODELS[x][4] for x in models]) + rng.normal(0, 0.1, m)
    noise_sd = np.array([MODELS[x][5] for x in models]) * NOISE_SCALE * rng.uniform(0.9, 1.1, m)
    verbosity = np.array([MODELS[x][6] for x in models]) * rng.lognormal(0, 0.15, m)
    offset = rng.normal(0, 0.3, (m, nt))
    for i, x in enumerate(models):
        for t, v in ARCHETYPES.get(x, {}).items():
            offset[i, TOPICS.index(t)] += v * rng.uniform(0.6, 1.3)
    price_in = np.array([MODELS[x][0] for x in models])
    price_out = np.array([MODELS[x][1] for x in models])
    order = np.argsort(price_in + price_out)
    cheap_half, pricey_half = order[: max(1, m // 2)], order[m // 2 :]
    # surprises: a cheap model that is excellent at one topic, a pricey one that is poor at one topic
    offset[rng.choice(cheap_half), rng.integers(nt)] += 1.3
    offset[rng.choice(pricey_half), rng.integers(nt)] -= 1.1
    topic_weight = rng.dirichlet(np.full(nt, 8.0))
    topic_shift = rng.normal(0, 0.15, nt)

    prompts, cats, score, tokens, cost = [], [], np.zeros((rows, m)), np.zeros((rows, m)), np.zeros((rows, m))
    seen_d, seen_long = np.zeros(rows), np.zeros(rows, dtype=bool)  # what the text shows of each row's difficulty
    topic_idx = rng.choice(nt, size=rows, p=topic_weight)
    latent = hidden_difficulty(rows, rng)
    for i in range(rows):
        t = topic_idx[i]
        topic = TOPICS[t]
        text, vis, is_long = make_prompt(topic, r)
        prompts.append(text)
        cats.append(topic)
        seen_d[i], seen_long[i] = (
            TOPIC_LEVEL[topic][0] + topic_shift[t] + 0.8 * vis + (0.2 if is_long else 0.0),
            is_long,
        )
        d = seen_d[i] + latent[i]
        p = success(skill, offset[:, t], long_eff, is_long, hard, d, rng.normal(0, 1, m) * noise_sd)
        if graded:
            conc = 6.0
            score[i] = np.clip(rng.beta(p * conc + 1e-3, (1 - p) * conc + 1e-3), 0, 1).round(3)
        else:
            score[i] = (rng.random(m) < p).astype(float)
        mu = mean_tokens(verbosity, TOPIC_LEVEL[topic][1], is_long, d)
        tok = np.maximum(5, np.round(rng.lognormal(np.log(mu), TOKEN_SD))).astype(int)
        tokens[i] = tok
        cost[i] = cost_usd(len(text) / 4, tok, price_in, price_out)
    # the generator's own parameters and each row's visible part: what a router that knew the generator
    # exactly (but not the hidden per-prompt latent and per-model noise) would route on (synth_bound.py)
    truth = dict(
        topic=topic_idx,
        seen_d=seen_d,
        is_long=seen_long,
        prompt_tokens=np.array([len(x) / 4 for x in prompts]),
        skill=skill,
        offset=offset,
        long_eff=long_eff,
        hard=hard,
        noise_sd=noise_sd,
        verbosity=verbosity,
        price_in=price_in,
        price_out=price_out,
    )
    return dict(prompts=prompts, categories=cats, models=models, scores=score, costs=cost, tokens=tokens, truth=truth)


def write_csv(table: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    models = table["models"]
    header = ["prompt", "category"] + [f"{k}:{x}" for x in models for k in ("score", "cost", "tokens")]
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        for i, text in enumerate(table["prompts"]):
            row = [text, table["categories"][i]]
            for j in range(len(models)):
                s = table["scores"][i, j]
                row += [f"{s:g}", f"{table['costs'][i, j]:.8f}", str(int(table["tokens"][i, j]))]
            w.writerow(row)


def sanity(table: dict) -> str:
    s, c, models = table["scores"], table["costs"], table["models"]
    lines = [f"{len(s)} rows, {len(models)} models"]
    for j in np.argsort(-c.mean(0)):
        lines.append(f"  {models[j]:<20} score {s[:, j].mean():.3f}  cost ${c[:, j].mean():.6f}")
    best = int(np.argmax(s.mean(0)))
    cheapest = int(np.argmin(c.mean(0)))
    priciest = int(np.argmax(c.mean(0)))
    top = s.max(1)
    # oracle: per prompt, the cheapest model reaching the row's best score
    pick = np.where(s >= top[:, None] - 1e-12, c, np.inf).argmin(1)
    oracle_cost = c[np.arange(len(s)), pick].mean()
    lines.append(
        f"  best single: {models[best]} {s[:, best].mean():.3f} @ ${c[:, best].mean():.6f}"
        f"{'  (= priciest)' if best == priciest else '  (not the priciest)'}"
    )
    lines.append(f"  cheapest:    {models[cheapest]} {s[:, cheapest].mean():.3f}")
    lines.append(f"  oracle:      {top.mean():.3f} @ ${oracle_cost:.6f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rows", type=int, default=3000)
    ap.add_argument("--models", type=int, default=len(MODELS), help=f"how many models (2..{len(MODELS)})")
    ap.add_argument("--graded", action="store_true", help="scores in [0, 1] instead of 0/1")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if not 2 <= args.models <= len(MODELS):
        ap.error(f"--models must be between 2 and {len(MODELS)}")
    table = generate(args.seed, args.rows, args.models, args.graded)
    write_csv(table, args.out)
    if not args.quiet:
        print(f"wrote {args.out} (seed {args.seed})")
        print(sanity(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
