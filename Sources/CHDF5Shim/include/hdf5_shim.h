#ifndef TESSERA_HDF5_SHIM_H
#define TESSERA_HDF5_SHIM_H
#include <hdf5.h>
// HDF5 exposes its type and property ids as macros over global variables; Swift cannot import
// those, so these functions return them.
hid_t tessera_h5t_native_float(void);
hid_t tessera_h5t_native_double(void);
hid_t tessera_h5t_native_int64(void);
hid_t tessera_h5t_native_int32(void);
hid_t tessera_h5t_native_uint8(void);
hid_t tessera_h5t_c_s1(void);
hid_t tessera_h5p_default(void);
hid_t tessera_h5s_all(void);
hid_t tessera_h5p_dataset_create(void);
hid_t tessera_h5p_link_create(void);
/// Silences HDF5's automatic error stack printing (errors are reported by the Swift wrapper).
void tessera_h5_silence_errors(void);
#endif
