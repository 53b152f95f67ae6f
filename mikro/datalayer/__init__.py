"""Pixel and table I/O: obstore stores from grants, zarr v3 write/read, xarray+dask views."""

from mikro.datalayer._grant import GrantProvider, StorageGrant

__all__ = ["GrantProvider", "StorageGrant"]
