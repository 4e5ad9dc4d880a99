"""The owner's console at ``/admin``: Gradio Blocks over the services only, behind the login of
kit/server/admin_login.py. ``app`` builds it; each tab module adds its tabs (``documents``: the Documents tab)."""
