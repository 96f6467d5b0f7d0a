"""GOV.UK Notify: sending (`send`), permanent failures read from its API (`feedback`), and its
settings (`settings`). Importing the package loads nothing but this line."""
