"""Word lists the sandbox dataset draws from: cities, industries, name parts, email domains.

Everything here is fictional or generic; no list entry is a real brand."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class City:
    name: str
    state: str  # two-letter code
    state_name: str
    area_codes: tuple[str, ...]
    zip_prefix: str  # first three digits of the city's ZIP codes
    weight: int  # relative share of businesses
    lat: float
    lng: float


CITIES: tuple[City, ...] = (
    City("Austin", "TX", "Texas", ("512", "737"), "787", 6, 30.2672, -97.7431),
    City("Dallas", "TX", "Texas", ("214", "469"), "752", 6, 32.7767, -96.7970),
    City("Houston", "TX", "Texas", ("713", "832"), "770", 7, 29.7604, -95.3698),
    City("San Antonio", "TX", "Texas", ("210",), "782", 5, 29.4241, -98.4936),
    City("Denver", "CO", "Colorado", ("303", "720"), "802", 5, 39.7392, -104.9903),
    City("Phoenix", "AZ", "Arizona", ("602", "480"), "850", 6, 33.4484, -112.0740),
    City("Seattle", "WA", "Washington", ("206",), "981", 5, 47.6062, -122.3321),
    City("Portland", "OR", "Oregon", ("503", "971"), "972", 4, 45.5152, -122.6784),
    City("San Diego", "CA", "California", ("619", "858"), "921", 5, 32.7157, -117.1611),
    City("Los Angeles", "CA", "California", ("213", "323"), "900", 9, 34.0522, -118.2437),
    City("San Francisco", "CA", "California", ("415",), "941", 4, 37.7749, -122.4194),
    City("Chicago", "IL", "Illinois", ("312", "773"), "606", 8, 41.8781, -87.6298),
    City("Miami", "FL", "Florida", ("305", "786"), "331", 5, 25.7617, -80.1918),
    City("Orlando", "FL", "Florida", ("407",), "328", 3, 28.5383, -81.3792),
    City("Tampa", "FL", "Florida", ("813",), "336", 3, 27.9506, -82.4572),
    City("Atlanta", "GA", "Georgia", ("404", "678"), "303", 5, 33.7490, -84.3880),
    City("Nashville", "TN", "Tennessee", ("615",), "372", 3, 36.1627, -86.7816),
    City("Charlotte", "NC", "North Carolina", ("704",), "282", 3, 35.2271, -80.8431),
    City("Raleigh", "NC", "North Carolina", ("919",), "276", 2, 35.7796, -78.6382),
    City("Boston", "MA", "Massachusetts", ("617",), "021", 4, 42.3601, -71.0589),
    City("New York", "NY", "New York", ("212", "646"), "100", 10, 40.7128, -74.0060),
    City("Philadelphia", "PA", "Pennsylvania", ("215", "267"), "191", 5, 39.9526, -75.1652),
    City("Minneapolis", "MN", "Minnesota", ("612",), "554", 3, 44.9778, -93.2650),
    City("Salt Lake City", "UT", "Utah", ("801",), "841", 2, 40.7608, -111.8910),
    City("Las Vegas", "NV", "Nevada", ("702",), "891", 3, 36.1699, -115.1398),
    City("Columbus", "OH", "Ohio", ("614",), "432", 3, 39.9612, -82.9988),
)


@dataclass(frozen=True, slots=True)
class Industry:
    name: str  # lowercase, as stored on Business.industry
    weight: int
    words: tuple[str, ...]  # how the trade appears in a business name
    suffixes: tuple[str, ...]  # public suffixes its websites use (".com" the most common)
    google_type: str  # Google Places primary type
    employees: tuple[int, int]


INDUSTRIES: tuple[Industry, ...] = (
    Industry("salon", 22, ("Salon", "Hair Salon", "Hair Studio", "Salon & Spa", "Hair Co"),
             ("com", "com", "com", "salon", "studio", "co", "net", "hair"), "hair_salon", (2, 25)),
    Industry("barber", 7, ("Barbershop", "Barber Co", "Barbers", "Cuts"),
             ("com", "com", "co", "net"), "barber_shop", (1, 12)),
    Industry("spa", 6, ("Spa", "Day Spa", "Wellness Spa", "Skin & Spa"),
             ("com", "com", "spa", "co"), "spa", (3, 30)),
    Industry("nail salon", 7, ("Nails", "Nail Bar", "Nail Studio", "Nail Lounge"),
             ("com", "com", "salon", "beauty", "net"), "nail_salon", (2, 15)),
    Industry("dental clinic", 6, ("Dental", "Family Dentistry", "Dental Care", "Smiles"),
             ("com", "com", "dental", "clinic", "care"), "dentist", (4, 40)),
    Industry("medical clinic", 4, ("Medical Clinic", "Family Medicine", "Health Center"),
             ("com", "com", "clinic", "health", "care"), "doctor", (5, 60)),
    Industry("chiropractor", 4, ("Chiropractic", "Spine & Wellness", "Chiropractic Center"),
             ("com", "com", "clinic", "health"), "chiropractor", (1, 12)),
    Industry("physiotherapy", 3, ("Physical Therapy", "Physio", "Rehab & Physio"),
             ("com", "com", "physio", "clinic"), "physiotherapist", (2, 25)),
    Industry("yoga studio", 5, ("Yoga", "Yoga Studio", "Yoga Collective"),
             ("com", "com", "yoga", "studio", "co"), "yoga_studio", (2, 20)),
    Industry("pilates studio", 3, ("Pilates", "Pilates Studio", "Reformer Pilates"),
             ("com", "com", "studio", "fitness"), "fitness_center", (2, 15)),
    Industry("fitness studio", 5, ("Fitness", "Strength Studio", "Training Club", "Bootcamp"),
             ("com", "com", "fitness", "studio", "co"), "gym", (3, 30)),
    Industry("massage therapy", 5, ("Massage", "Massage Therapy", "Bodywork"),
             ("com", "com", "net", "health"), "massage", (1, 15)),
    Industry("tattoo studio", 3, ("Tattoo", "Tattoo Studio", "Ink", "Tattoo Co"),
             ("com", "com", "tattoo", "studio"), "tattoo_shop", (1, 10)),
    Industry("restaurant", 6, ("Kitchen", "Bistro", "Cafe", "Grill", "Eatery"),
             ("com", "com", "restaurant", "menu", "cafe"), "restaurant", (5, 60)),
    Industry("veterinary clinic", 4, ("Animal Hospital", "Veterinary Clinic", "Pet Clinic"),
             ("com", "com", "vet", "clinic", "pet"), "veterinary_care", (4, 40)),
)

GIVEN_NAMES: tuple[str, ...] = (
    "Bella", "Luna", "Aurora", "Ivy", "Stella", "Nova", "Mila", "Ruby", "Hazel", "Olive",
    "Jade", "Willow", "Sage", "Poppy", "Violet", "Marlowe", "Juniper", "Coco", "Rosa", "Elise",
)
ADJECTIVES: tuple[str, ...] = (
    "Golden", "Silver", "Blue", "Urban", "Modern", "Velvet", "Bright", "Lucky", "Little", "Wild",
    "Quiet", "True", "Happy", "Bold", "Honest", "Pure", "Sunny", "Copper", "Crimson", "Gentle",
)
NOUNS: tuple[str, ...] = (
    "Oak", "Maple", "Cedar", "Willow", "Pine", "River", "Harbor", "Stone", "Fern", "Lotus",
    "Bloom", "Canyon", "Meadow", "Summit", "Lantern", "Orchid", "Sparrow", "Ember", "Tide", "Birch",
)
FIRST_NAMES: tuple[str, ...] = (
    "Dana", "Priya", "Maria", "James", "Aisha", "Carlos", "Emily", "Noah", "Sofia", "Liam",
    "Olivia", "Ethan", "Grace", "Mateo", "Chloe", "Lucas", "Hannah", "Diego", "Zoe", "Owen",
    "Nina", "Samuel", "Leah", "Gabriel", "Ava", "Isaac", "Maya", "Julian", "Ella", "Adrian",
    "Tessa", "Marcus", "Ingrid", "Rafael", "Keiko", "Tomas", "Amara", "Felix", "Lena", "Omar",
)
LAST_NAMES: tuple[str, ...] = (
    "Whitfield", "Ramirez", "Nguyen", "Patel", "Okafor", "Johansson", "Kowalski", "Moreno",
    "Bennett", "Castillo", "Fischer", "Hughes", "Ivanova", "Jensen", "Kaur", "Larsen", "Mendez",
    "Novak", "Osei", "Park", "Quinn", "Rossi", "Sato", "Tran", "Underwood", "Vasquez", "Walsh",
    "Yamamoto", "Zielinski", "Abbott", "Brennan", "Delgado", "Ellison", "Fontaine", "Garza",
    "Holloway", "Ibarra", "Lindqvist", "Marsh", "Navarro",
)
STREET_NAMES: tuple[str, ...] = (
    "Main", "Oak", "Maple", "Cedar", "Elm", "Pine", "Lake", "Hill", "Park", "Washington",
    "Lincoln", "Congress", "Franklin", "Jefferson", "Sunset", "Highland", "Broadway", "Market",
    "Church", "Mill", "Spring", "River", "Magnolia", "Lamar", "Burnet", "Sixth", "Grand", "Pearl",
)
STREET_TYPES: tuple[tuple[str, str], ...] = (
    ("Street", "St"), ("Avenue", "Ave"), ("Boulevard", "Blvd"), ("Road", "Rd"), ("Drive", "Dr"),
    ("Lane", "Ln"),
)
STAFF_POSITIONS: tuple[str, ...] = (
    "Manager", "Office Manager", "Front Desk Lead", "Marketing Coordinator", "Studio Manager",
)
GENERIC_LOCAL_PARTS: tuple[str, ...] = (
    "info", "hello", "bookings", "contact", "appointments", "frontdesk",
)
WEBMAIL_DOMAINS: tuple[str, ...] = ("gmail.com", "yahoo.com", "outlook.com", "hotmail.com")
DISPOSABLE_DOMAINS: tuple[str, ...] = ("mailinator.com", "guerrillamail.com", "10minutemail.com")
