"""Small pretrained weights shipped with the package."""
