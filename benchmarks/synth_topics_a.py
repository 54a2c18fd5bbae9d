"""Prompt text of the synthetic tables (benchmarks/synth_tables.py): algebra, python, organic chemistry, European history, contract law."""

from __future__ import annotations

from synth_common import topic
from synth_text import _num, _price

topic(
    "algebra",
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
    context="""
        I am tutoring a middle school student who struggles with word problems.
        Our textbook chapter this week covers linear equations and systems of equations.
        The teacher wants every algebra step written out, with the equation set up from the story.
        Last time I tried this kind of problem I mixed up which quantity was the unknown variable.
        Please define the variables clearly before solving the equations.
        We are allowed to use a calculator but not a computer algebra system.
    """,
    easy=["Just give the final number.", "Keep the explanation short."],
    hard=[
        "Show every algebraic step and verify the answer by substitution.",
        "Also prove that the solution is unique.",
        "Generalise the answer to arbitrary values of the parameters.",
    ],
)

topic(
    "python",
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
    context="""
        I'm working on a Flask web application that runs on Python 3.11.
        The code base uses pandas and numpy heavily, and we run the tests with pytest.
        Performance matters because the function is called on millions of records per day.
        Please follow PEP 8 and avoid third-party dependencies where the standard library suffices.
        Here is some background: the data comes from a CSV export and the fields are sometimes missing.
        I am a beginner programmer, so please comment the Python code.
    """,
    easy=["A short snippet is enough.", "No need for tests."],
    hard=[
        "Handle every edge case, including empty input and unicode, and state the time complexity.",
        "Make it thread-safe and explain why.",
        "It must run in O(n log n) time and O(1) extra memory.",
    ],
)

topic(
    "organic_chemistry",
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
    context="""
        I'm studying for my organic chemistry II final exam.
        Our professor emphasises arrow-pushing mechanisms and stereochemistry.
        We covered carbocation rearrangements and Markovnikov's rule last week.
        The lab report asks us to justify the regioselectivity of the reaction.
        Please mention any side products and the reaction conditions (solvent, temperature).
    """,
    easy=["A brief answer is fine.", "Just name the product."],
    hard=[
        "Include stereochemistry and explain the kinetic versus thermodynamic control.",
        "Justify every step with pKa values and orbital arguments.",
    ],
)

topic(
    "european_history",
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
    context="""
        I'm writing a history essay for my university seminar on early modern and modern Europe.
        My lecturer wants us to weigh economic, religious and dynastic factors.
        Historians disagree about this, so please present more than one historiographical view.
        The essay has to be around two thousand words and cite sources such as Hobsbawm or Kennedy.
        We have been reading about the monarchies, empires and nation states of the nineteenth century.
    """,
    easy=["Keep it to a few sentences.", "Just the key facts please."],
    hard=[
        "Discuss the historiographical debate and cite specific dates and primary sources.",
        "Assess long-term and short-term causes critically.",
    ],
)

topic(
    "contract_law",
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
    context="""
        I run a small business and we do not have in-house legal counsel.
        The contract contains an arbitration clause and a choice of law clause.
        The agreement was signed electronically and the parties exchanged several emails afterwards.
        I understand this is not legal advice; I just want to understand the legal principles involved.
        The counterparty claims the liquidated damages clause is an unenforceable penalty.
    """,
    easy=["A short overview is enough.", "Answer yes or no with one reason."],
    hard=[
        "Cite the leading case law and distinguish contrary precedents.",
        "Analyse the enforceability of each clause under both common law and civil law systems.",
    ],
)
