#ifndef TESSERA_HDF5_SHIM_H
#define TESSERA_HDF5_SHIM_H
#include <hdf5.h>
#include <stddef.h>
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
/// Note: in thread-safe builds of libhdf5 this setting is per thread.
void tessera_h5_silence_errors(void);
/// Like tessera_h5_silence_errors, but does the work only once per calling thread.
void tessera_h5_silence_errors_once_per_thread(void);

// Little-endian file (storage) types, so files look the same on every host.
hid_t tessera_h5t_ieee_f32le(void);
hid_t tessera_h5t_ieee_f64le(void);
hid_t tessera_h5t_std_i64le(void);
hid_t tessera_h5t_std_u8le(void);
hid_t tessera_h5p_file_access(void);
/// H5T_VARIABLE (a (size_t)-1 macro).
size_t tessera_h5t_variable(void);
unsigned tessera_h5f_acc_trunc(void);
unsigned tessera_h5f_acc_rdonly(void);
unsigned tessera_h5f_acc_rdwr(void);

/// Copies the most specific message of the current thread's HDF5 error stack into buf
/// (NUL-terminated, truncated to len) and clears the stack. Returns 1 if a message was found.
int tessera_h5_take_error_message(char *buf, size_t len);

/// Visits every dataset reachable by hard links below loc_id (recursively), calling
/// emit(name, ctx) with the path relative to loc_id. Returns a negative value on failure.
typedef void (*tessera_h5_name_sink)(const char *name, void *ctx);
herr_t tessera_h5_visit_datasets(hid_t loc_id, tessera_h5_name_sink emit, void *ctx);

/// The kind of object `name` (relative to loc_id) resolves to: 0 = nothing (or any path
/// component missing), 1 = group, 2 = dataset, 3 = other (named datatype, dangling link...).
int tessera_h5_object_kind(hid_t loc_id, const char *name);
#endif
