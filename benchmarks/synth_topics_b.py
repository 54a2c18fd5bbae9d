"""Prompt text of the synthetic tables (benchmarks/synth_tables.py): poetry, French translation, medical diagnosis, physics, geography, SQL, summarising."""

from __future__ import annotations

from synth_common import topic
from synth_text import _num

topic(
    "poetry",
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
    context="""
        I'd like to read this poem aloud at a family gathering.
        The mood should be gentle and melancholic, with vivid imagery and metaphor.
        Please avoid cliches like hearts and roses; surprise me with the imagery.
        It is for a creative writing workshop where we study meter, rhyme and stanza forms.
        I love poems with strong sensory details and a twist in the final line.
    """,
    easy=["Keep it short.", "Any form is fine."],
    hard=["Every line must scan perfectly; mark the stressed syllables.", "Use an acrostic that spells the theme."],
)

topic(
    "french_translation",
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
    context="""
        I'm preparing an email to a French client and want to sound polite and professional.
        The translation will be read by native speakers in Paris, so please use natural French.
        Please keep the tone and register of the English original in the French version.
        I'm learning French at the B1 level, so please also explain the grammar you used.
        This text is for a French menu and a tourist brochure.
    """,
    easy=["Only the French translation please.", "A literal translation is fine."],
    hard=[
        "Explain every choice of tense, gender agreement and register.",
        "Give translations for both France and Quebec French and explain the differences.",
    ],
)

topic(
    "medical_diagnosis",
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
    context="""
        I am a third-year medical student preparing for the USMLE Step 2 exam.
        The patient's vital signs: blood pressure 150/95, heart rate 104, temperature 38.4 C.
        The patient takes metformin and lisinopril and has no known drug allergies.
        Physical examination is otherwise unremarkable; the ECG shows sinus tachycardia.
        The family history includes early coronary artery disease and breast cancer.
    """,
    easy=["Just name the most likely diagnosis.", "One line is enough."],
    hard=[
        "Rank the differential diagnoses by likelihood and justify each with pathophysiology.",
        "Include the evidence-based guideline recommendations and drug dosages.",
    ],
)

topic(
    "physics",
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
    context="""
        This is for my first-year university physics course on mechanics and electromagnetism.
        Please state which physical laws and conservation principles you use.
        Ignore air resistance unless it changes the answer significantly.
        Give the final answer with SI units and three significant figures.
        My lab partner and I got different answers to this problem, so please explain carefully.
    """,
    easy=["Just the numerical answer.", "A rough estimate is fine."],
    hard=[
        "Include air resistance proportional to v^2 and solve numerically.",
        "Derive the result from the Lagrangian and discuss its limits of validity.",
    ],
)

topic(
    "geography",
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
    context="""
        We're having a pub quiz night and I want to double-check the geography answers.
        My daughter is studying world capitals, rivers and mountain ranges for a school test.
        I'm planning a backpacking trip and want to learn about the countries and cities on the route.
        Our atlas is a bit old, so borders and city populations may have changed.
    """,
    easy=["One word answer.", "Just the name."],
    hard=["Give precise figures with sources and note any disputed borders.", "Rank them and give exact numbers."],
)

topic(
    "sql",
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
    context="""
        We use PostgreSQL 15 and the orders table has about 50 million rows.
        The schema: orders(id, customer_id, amount, created_at), customers(id, name, country).
        The query runs in a nightly reporting job and currently takes over an hour.
        I am a data analyst and mostly write SELECT queries for dashboards.
        Please make the SQL compatible with both MySQL and PostgreSQL if possible.
    """,
    easy=["Just the query.", "A simple query is fine."],
    hard=[
        "Handle ties and NULL values correctly and explain the query plan.",
        "Make it efficient on billions of rows and justify the indexes.",
    ],
)

topic(
    "summarising",
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
    context="""
        I need to paste the summary into our weekly newsletter.
        My manager only reads the first two lines of anything I send, so the main point must come first.
        Please keep a neutral tone and do not add information that is not in the original text.
        The original document is much longer; this excerpt is the most important section.
        The audience is busy executives who want the key takeaway and the decision needed.
    """,
    easy=["Keep it very brief.", "Any short summary is fine."],
    hard=[
        "Preserve every figure exactly and flag any claims that are not supported by the text.",
        "Produce both an executive summary and a detailed summary with section headings.",
    ],
)
