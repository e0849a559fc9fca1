"""fer_keras.data: the dataset readers, the tf.data pipelines, augmentation and the generated demo data."""
