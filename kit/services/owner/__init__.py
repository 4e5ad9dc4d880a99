"""The owner's side after shipping: the feedback store, conversation review and corrections, content gaps,
analytics and leads."""
