"""GOV.UK Notify: sending (`send`), each person's body in Notify's formatting (`body`),
permanent failures read from its API (`feedback`), and its settings (`settings`). Importing
the package loads nothing but this line."""
