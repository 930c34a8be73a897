"""The things our features describe."""

from featurestore import Entity

driver = Entity(name="driver", join_keys=["driver_id"], description="A ride-hailing driver")
customer = Entity(name="customer", join_keys=["customer_id"], description="A rider")
# A composite key: statistics of a route between two zones.
route = Entity(name="route", join_keys=["origin_id", "destination_id"], description="A pair of city zones")
