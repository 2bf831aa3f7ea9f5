// TesseraHDF5 module
