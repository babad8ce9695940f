"""The sandbox's fake external APIs, one module per vendor, each faithful to
../shared/contracts/<vendor>.json."""
