// TesseraData module
