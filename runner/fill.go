package runner

import (
	"reflect"
)

// filledCopy returns a deep copy of v with fill applied to every string
// in it: struct fields, slice elements, map keys and values, through
// pointers and interfaces. It is how references ({NAME.addr}, {self},
// {run_dir}) are filled in "anywhere in the file" without a list of the
// fields that may hold them.
func filledCopy[T any](v T, fill func(string) string) T {
	return fillValue(reflect.ValueOf(&v).Elem(), fill).Interface().(T)
}

func fillValue(v reflect.Value, fill func(string) string) reflect.Value {
	t := v.Type()
	switch v.Kind() {
	case reflect.String:
		return reflect.ValueOf(fill(v.String())).Convert(t)
	case reflect.Pointer:
		if v.IsNil() {
			return v
		}
		n := reflect.New(t.Elem())
		n.Elem().Set(fillValue(v.Elem(), fill))
		return n
	case reflect.Interface:
		if v.IsNil() {
			return v
		}
		n := reflect.New(t).Elem()
		n.Set(fillValue(v.Elem(), fill))
		return n
	case reflect.Struct:
		n := reflect.New(t).Elem()
		n.Set(v) // unexported fields are kept as they are
		for i := range v.NumField() {
			if n.Field(i).CanSet() {
				n.Field(i).Set(fillValue(v.Field(i), fill))
			}
		}
		return n
	case reflect.Slice:
		if v.IsNil() {
			return v
		}
		n := reflect.MakeSlice(t, v.Len(), v.Len())
		for i := range v.Len() {
			n.Index(i).Set(fillValue(v.Index(i), fill))
		}
		return n
	case reflect.Array:
		n := reflect.New(t).Elem()
		for i := range v.Len() {
			n.Index(i).Set(fillValue(v.Index(i), fill))
		}
		return n
	case reflect.Map:
		if v.IsNil() {
			return v
		}
		n := reflect.MakeMapWithSize(t, v.Len())
		it := v.MapRange()
		for it.Next() {
			n.SetMapIndex(fillValue(it.Key(), fill), fillValue(it.Value(), fill))
		}
		return n
	}
	return v
}
