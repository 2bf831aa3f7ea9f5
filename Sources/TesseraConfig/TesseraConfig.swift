// TesseraConfig module
