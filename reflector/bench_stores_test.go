package reflector

func benchStores() []benchStore {
	return []benchStore{{"memory", memoryBackend}}
}
